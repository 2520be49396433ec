"""Review of policies for pull requests: floor 3. Reads only the IR (and the evaluator).

`lint` finds risky or dead rules; `sarif` renders its findings for code scanning.
"""
