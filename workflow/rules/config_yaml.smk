# Runs before Snakemake reads config/config.yaml (the Snakefile's next line): a YAML error
# names the file, the line and the column, which Snakemake 9's own message ("Config file is
# not valid JSON or YAML") does not. Files given with --configfile are read by Snakemake
# before any workflow code runs; ./reproduce checks those with the same tool.
import runpy

from snakemake.exceptions import WorkflowError

_yaml_problem = runpy.run_path("tools/check_yaml.py")["yaml_problem"]("config/config.yaml")
if _yaml_problem is not None:
    raise WorkflowError(_yaml_problem)
