# The config check, before any job runs. First the schema (workflow/schemas/), each problem
# on one line naming its key (Snakemake's validate() prints the whole schema and config after
# the first one); then what a schema cannot say, so that a job does not fail minutes later:
# a paper-mode training setting whose layer map is not a contraction at init, a sample
# count larger than its data set has, a setting key that does nothing in its mode, and a
# training width whose estimated memory exceeds compute.memory_budget_gb. Every problem
# found is listed in one error.
#
# Plain Python (no Snakemake directives): tests run it with runpy and a config of their own.
import math
from pathlib import Path

import jsonschema
import yaml
from snakemake.exceptions import WorkflowError

DEFAULT_SIGMA_W = 0.4  # overdeq.model.DEQConfig.sigma_w, a setting's sigma_w when not given
# The largest class-balanced n of classes 0 and 1 (the only classes the workflow uses), as in
# docs/data.md: digits 178 + 182 images, MNIST's training split 5923 + 6742, CIFAR-10's
# 5000 + 5000 (overdeq.data.max_samples; tests/test_faults_pipeline.py holds them together).
MAX_N = {"digits": 356, "mnist": 11846, "cifar10": 10000}


def _key(path):
    return ".".join(str(p) for p in path) or "(top level)"


def schema_problems(config, schema):
    """One line per schema violation: the key, what is wrong, what is allowed."""
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.path))):
        if error.validator == "additionalProperties":
            allowed = sorted(error.schema.get("properties", {}))
            unknown = sorted(set(error.instance) - set(allowed))
            where = _key(error.path) if error.path else "the config's top level"
            for name in unknown:
                key = f"{_key(error.path)}.{name}" if error.path else name
                problems.append(f"{key}: not a known key; {where} takes {', '.join(allowed)}")
            continue
        if error.validator in ("oneOf", "anyOf") and error.context:
            error = jsonschema.exceptions.best_match(error.context)
        problems.append(f"{_key(error.path)}: {error.message}")
    return problems


def _width_scale(setting, dataset, width):
    """The width in the 1/sqrt(m) factor of one grid point (train_args in common.smk)."""
    if "width_scale_ratio" in setting:
        ratio = setting["width_scale_ratio"]
        ratio = ratio.get(dataset) if isinstance(ratio, dict) else ratio
        return max(1, round(width / ratio)) if ratio else width
    return setting.get("width_scale", width)


def contraction_problems(training):
    """Paper mode promises a contraction at init: 2 sigma_w sqrt(m / m_scale) < 1
    (overdeq.model.contraction_bound), unless the setting allows an expansive map."""
    problems = []
    for name, grid in training["grids"].items():
        for setting_name in grid["settings"]:
            setting = training["settings"].get(setting_name)
            if not setting or setting["mode"] != "paper" or setting.get("allow_expansive"):
                continue
            sigma_w = setting.get("sigma_w", DEFAULT_SIGMA_W)
            worst = max(
                (
                    2.0 * sigma_w * math.sqrt(width / _width_scale(setting, dataset, width)),
                    width,
                )
                for dataset in grid["datasets"]
                for width in grid["widths"]
            )
            if worst[0] >= 1.0:
                problems.append(
                    f"training.settings.{setting_name}: sigma_w {sigma_w} in paper mode gives "
                    f"2 sigma_w sqrt(m / m_scale) = {worst[0]:.2f} >= 1 at width {worst[1]} "
                    f"(grid {name}): the layer map is not a contraction at init, so the "
                    "equilibrium need not exist or be unique. Use sigma_w below 0.5, or add "
                    "allow_expansive: true to the setting"
                )
    return problems


# overdeq.preflight: DIMS and training_bytes, copied (importing overdeq loads torch, seconds
# on every Snakemake start); tests/test_faults_run.py holds the copies together.
DIMS = {"digits": 64, "mnist": 784, "cifar10": 3072}
GB = 1e9
RUNTIME = 200_000_000


def training_bytes(n, d, width, precision):
    """Estimated peak memory of `overdeq train` (overdeq.preflight.training_bytes)."""
    b = 8 if precision == "float64" else 4
    m = width
    params = m * m + m * d + 3 * m + 1
    fixed = 4 * params * b + 32 * m * m + n * m * (20 * b + 8 * 8) + 32 * n * n + 16 * n * d
    return fixed + RUNTIME


def _gb(nbytes):
    """Bytes as GB, as overdeq.preflight._gb writes them: 4,800,010 / 21.3 / 0.02."""
    x = nbytes / GB
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 1 else f"{x:.2g}"


def memory_problems(config):
    """Training widths whose estimated memory exceeds compute.memory_budget_gb (if set)."""
    budget = config["compute"].get("memory_budget_gb")
    if budget is None:
        return []
    problems = []
    settings = config["training"]["settings"]
    for name, grid in config["training"]["grids"].items():
        precision = config["compute"]["precision"]
        if any(settings.get(s, {}).get("precision") == "float64" for s in grid["settings"]):
            precision = "float64"  # a setting's own precision: the widest one counts
        for dataset in grid["datasets"]:
            spec = config["training"]["datasets"].get(dataset)
            if spec is None:
                continue
            n = spec["n"]
            d = spec.get("d") or (n if dataset in ("identity", "gaussian") else DIMS[dataset])
            for width in grid["widths"]:
                need = training_bytes(n, d, width, precision)
                if need > budget * GB:
                    problems.append(
                        f"training.grids.{name}.widths: width {width} needs about "
                        f"{_gb(need)} GB for {dataset} (n = {n}, d = {d}, {precision}), "
                        f"more than compute.memory_budget_gb = {budget}; lower the width or "
                        "raise the budget (overdeq.preflight.training_bytes is the estimate)"
                    )
    return problems


def useless_problems(training):
    """Setting keys that would do nothing in their mode (overdeq train refuses them)."""
    problems = []
    for name, setting in training["settings"].items():
        preset = "released" if setting["mode"] == "legacy" else "implicit"
        gradient = setting.get("gradient", preset)
        if setting.get("warm_start") and gradient != "implicit":
            problems.append(
                f"training.settings.{name}.warm_start: does nothing with the {gradient} "
                "gradient (its solves start from zero); drop it, or add gradient: implicit"
            )
        if setting.get("precision") == "mixed" and gradient != "implicit":
            problems.append(
                f"training.settings.{name}.precision: mixed does nothing with the {gradient} "
                "gradient (only the exact implicit gradient's solves take bfloat16 sweeps; "
                "this one runs in float32); use float32, or tf32 for tensor cores"
            )
        if "allow_expansive" in setting and setting["mode"] != "paper":
            problems.append(
                f"training.settings.{name}.allow_expansive: does nothing in {setting['mode']} "
                "mode (only paper mode checks for a contraction); drop it"
            )
    for dataset, spec in training["datasets"].items():
        if "d" in spec and dataset not in ("identity", "gaussian"):
            problems.append(
                f"training.datasets.{dataset}.d: does nothing for {dataset} (its images fix "
                "d); drop it"
            )
    return problems


def _names(data):
    return [data] if isinstance(data, str) else list(data)


def sample_problems(config):
    """Sample counts each data set can supply, and the input dimensions they need."""
    problems = []
    counts = [
        (f"training.datasets.{name}.n", name, spec["n"], spec.get("d"))
        for name, spec in config["training"]["datasets"].items()
    ]
    for exp, params in config["random_deq"].items():
        if isinstance(params, dict):
            key = "ns" if "ns" in params else "n"
            for name in _names(params["data"]):
                for n in params[key] if key == "ns" else [params[key]]:
                    counts.append((f"random_deq.{exp}.{key}", name, n, None))
    for key, name, n, d in counts:
        if name in MAX_N and n > MAX_N[name]:
            problems.append(
                f"{key}: n = {n} is more than {name} has: at most {MAX_N[name]} samples of "
                f"classes 0 and 1, balanced (docs/data.md); lower n"
            )
        if key.startswith("training.") and name == "gaussian" and d is None:
            where = key.removesuffix(".n")
            problems.append(f"{where}: gaussian data needs its input dimension d (e.g. d: 64)")
        if name == "identity" and d is not None and d < n:
            problems.append(
                f"{key}: identity data has at most d = {d} distinct rows, but n = {n}; "
                "raise d to at least n, or drop d (d = n)"
            )
    return problems


def _shown(path):
    """A path as a message shows it: relative to the working directory when inside it."""
    path = Path(path).absolute()
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


def check_config(config, schema_path, files):
    """Raise a WorkflowError listing every problem of the config (merged from ``files``)."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    problems = schema_problems(config, schema)
    if not problems:  # the rest reads sections the schema guarantees
        problems = (
            contraction_problems(config["training"])
            + sample_problems(config)
            + useless_problems(config["training"])
            + memory_problems(config)
        )
    if problems:
        # Snakemake lists the --configfile files first; they override config/config.yaml
        sources = " overridden by ".join(str(f) for f in reversed(files)) or "the config"
        raise WorkflowError(
            f"{sources}: {len(problems)} problem(s); nothing was run:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + f"\n(what each key takes: {schema_path} and the comments in config/config.yaml)"
        )


check_config(
    config,
    _shown(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"),
    [_shown(f) for f in workflow.configfiles],
)
