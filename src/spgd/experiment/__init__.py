"""The experiment layer: run folders and the pipelines behind the commands, usable from Python as from the command
line. One module per stage every pipeline shares (runs: run folders and settings.json; console; seeding;
images; measurement; samples; tables), then one module per pipeline (evaluation, distributed, restore with
the demo, sweep, diagnose, bench, fid, train). A pipeline takes a typed plan (a dataclass) and returns a
record; it never parses arguments, prints results or chooses an exit code, and its errors name Python
parameters. The library rooms (priors, operators, samplers, presets, diagnostics, metrics, training) never
import it."""
