"""PACED on other training engines. Each module adapts paced_train's stages to one engine and
imports them (pass-rate table, weights from paced_theory, normaliser, weighted loss); nothing
in paced_train imports these modules.

  trl          Hugging Face TRL 1.16 (optional extra `trl`): PacedDistillationTrainer
               (on-policy, DistillationTrainer), PacedSampler, the weights and their checks
  trl_refresh  PassRateRefresh: the pass-rate callback (K rollouts, TRL-style reward)
  trl_gkd      the forward-KL stage on TRL's experimental GKDTrainer (PacedGKDTrainer) and
               the two-stage schedule across both trainers (PacedTwoStage)

verl needs no code for the hard filter (README, "with verl").
"""
