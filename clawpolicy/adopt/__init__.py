"""Adoption: floor 3. From a running OpenClaw deployment to a first policy, and back.

`openclaw_config` finds and loads OpenClaw's configuration (JSON5, `$include`), `deployment`
reads from it what the network policy needs, `starter` writes that as `.claw` text;
`procnet` lists a process's live sockets from /proc and `observe` judges them with the
evaluator. The CLI (`clawpolicy init --from-openclaw`, `clawpolicy observe`) is in
`clawpolicy.commands.adopt`.
"""
