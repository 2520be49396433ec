"""Operating a policy: floor 3. Log-only dry runs that lead to enforcement (issue 8).

`logparse` (kernel/journal/audit lines -> typed records), `explain` (records -> the rule that
decided), `flowfile` (recorded connections -> flows), `simulate` (flows -> what enforce would
do), `suggest` (what was blocked -> policy text for a human), `netlab` and `kerneltest` (the
policy's tests against the kernel). Each reads the IR and the evaluator, never the syntax tree.
"""
