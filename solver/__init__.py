"""Market clearing for one slot: a certified Nash-bargaining allocation.

`clear` computes a clearing (CVXPY + SCS or Clarabel); `verify` decides,
exactly and without any solver, whether a clearing is valid and how good it
is.  Nothing here imports the rest of TransX.
"""
