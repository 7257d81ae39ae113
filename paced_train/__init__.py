"""paced_train: a lean distillation loop that validates PACED weights on real neural students.

Imports paced_theory for every weight; never the reverse.
"""
