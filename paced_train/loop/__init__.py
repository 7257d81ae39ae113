"""One run's stages, a module each: rollouts, pass rates, batching, distill, losses, evaluate."""
