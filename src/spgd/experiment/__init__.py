"""The experiment layer: run folders and the pipelines behind the commands (evaluation, restore, demo, sweep,
diagnose, bench, fid, train), usable from Python as from the command line. The library rooms (priors, operators,
samplers, presets, diagnostics, metrics, training) never import it."""
