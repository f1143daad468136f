# Shared set-up: named helpers the rules call by name (the config is checked by then:
# workflow/rules/config_check.smk).
import json
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError

TIER = config["tier"]
RES = f"results/{TIER}"  # everything this tier computes lives under here
LOGS = f"logs/{TIER}"
BENCH = f"benchmarks/{TIER}"
DATA_ROOT = config["data_root"]

# One software environment: the locked venv that tools/setup.sh builds (requirements.lock).
# Rules carry no conda: or container: directives, so `--sdm conda` / `--use-conda` would only
# run the same commands in whatever environment Snakemake was started from: refuse it rather
# than let a user believe it built something.
_SDM = {str(m).lower() for m in workflow.deployment_settings.deployment_method}
if _SDM & {"conda", "apptainer", "singularity"}:
    raise WorkflowError(
        f"--software-deployment-method {' '.join(sorted(_SDM))} is not supported: this workflow "
        "runs in the locked virtual environment that tools/setup.sh builds from "
        "requirements.lock. Run ./reproduce (or tools/setup.sh, then .venv/bin/snakemake) "
        "without --sdm/--use-conda."
    )
TRAINING = config["training"]
ABLATIONS = config["ablations"]
COMPUTE = config["compute"]
GPUS_PER_JOB = 0 if COMPUTE["device"] == "cpu" else 1
DATA_SEED = 0  # inputs and labels are fixed across model seeds and widths

# raw files of the downloadable data sets (see docs/data.md)
RAW_FILES = {
    "mnist": [
        f"{DATA_ROOT}/raw/mnist/{name}.gz"
        for name in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    ],
    "cifar10": [f"{DATA_ROOT}/raw/cifar-10/cifar-10-python.tar.gz"],
}


def raw_root(wildcards, output):
    """The data root of a raw file: <root>/raw/<data set>/<file>."""
    return str(Path(output[0]).parents[2])


# What the paper needs: each topic's rule file registers its artefacts here (in the order
# the paper uses them), so the paper rule and `rule all` never list them by hand.
PAPER_FIGURES = []  # figures/<name>.pdf
PAPER_TABLES = []  # paper/generated/<name>.tex
PAPER_VALUES = []  # results/<tier>/values/<name>.json (macros for the text)
REPORT_FILES = []  # figures/<name>.png, paper/generated/<name>.html (the HTML report)


def results_root(wildcards, output):
    """results/<tier>, read off the path of an output that lives directly in it."""
    return str(Path(output[0]).parent)


def random_deq_table(experiment, name):
    """results/<tier>/random_deq/<experiment>/<name>: rows.csv, summary.csv or meta.json."""
    return f"{RES}/random_deq/{experiment}/{name}"


def yaml_to_json(source, target):
    """Write the YAML file ``source`` as JSON (the package reads JSON, never YAML)."""
    data = yaml.safe_load(Path(source).read_text())
    Path(target).write_text(json.dumps(data, indent=1) + "\n")


def verify_inputs():
    """The tables config/claims.yaml checks (so verify reruns exactly when they change)."""
    claims = yaml.safe_load(Path("config/claims.yaml").read_text())["claims"]
    tables = {check["table"] for claim in claims for check in claim["checks"]}
    return [f"{RES}/{table}" for table in sorted(tables)]


def paper_sections():
    """The hand-written LaTeX the paper inputs (paper/sections/*.tex)."""
    return sorted(str(p) for p in Path("paper/sections").glob("*.tex"))


# Paper section of each figure and table: the grouping of `snakemake --report report.html`
# (categories are sorted by name, hence the numbers).
REPORT_SECTIONS = {
    "tab_claims": "0 Claims and verdicts",
    "fig_kernel_limit": "1 Random DEQs at initialisation (E1-E3, E10)",
    "fig_init_condition": "1 Random DEQs at initialisation (E1-E3, E10)",
    "fig_wellposed": "1 Random DEQs at initialisation (E1-E3, E10)",
    "tab_kernels": "1 Random DEQs at initialisation (E1-E3, E10)",
    "fig_loss": "2 Training converges linearly (E4-E6)",
    "fig_invariants": "2 Training converges linearly (E4-E6)",
    "fig_rate": "2 Training converges linearly (E4-E6)",
    "tab_training": "2 Training converges linearly (E4-E6)",
    "fig_ablations": "3 What the released code changes (E7)",
    "tab_compute": "4 Compute",
}
# What the report lists each figure and table as (its label; the file name otherwise).
REPORT_TITLES = {
    "tab_claims": "every claim and check, with its verdict",
    "fig_kernel_limit": "E1 Gram matrices against the limit kernel",
    "fig_init_condition": "E2 the initial condition at finite width",
    "fig_wellposed": "E3 well-posedness against the weight scale",
    "tab_kernels": "E10 smallest eigenvalues of the limit kernels",
    "fig_loss": "E4 training loss",
    "fig_invariants": "E5 invariants along training",
    "fig_rate": "E6 linear rate against the tangent-kernel prediction",
    "tab_training": "E4-E6 every training configuration",
    "fig_ablations": "E7 the released code's quirks one at a time",
    "tab_compute": "job time and memory per experiment",
}


def paper_artefact(name, kind="figure"):
    """Register a figure or table script's outputs for the paper; returns its output paths.

    What the HTML report shows is marked with report(), its caption from
    workflow/report/<name>.rst and its paper section as the category: of a figure its PNG
    rendering (browsers do not show a PDF inline in the report), of a table its HTML page.
    """
    out = {"values": f"{RES}/values/{name}.json"}
    category = REPORT_SECTIONS.get(name, "5 Other figures and tables")
    caption = f"../report/{name}.rst"
    if kind == "figure":
        path = f"figures/{name}.pdf"
        out["figure"] = path
        out["png"] = report(
            f"figures/{name}.png",
            caption=caption,
            category=category,
            subcategory="figures",
            labels={"figure": REPORT_TITLES.get(name, name)},
        )
        PAPER_FIGURES.append(path)
        REPORT_FILES.append(f"figures/{name}.png")
    else:
        out["table"] = f"paper/generated/{name}.tex"
        out["html"] = report(
            f"paper/generated/{name}.html",
            caption=caption,
            category=category,
            subcategory="tables",
            labels={"table": REPORT_TITLES.get(name, name)},
        )
        PAPER_TABLES.append(out["table"])
        REPORT_FILES.append(f"paper/generated/{name}.html")
    PAPER_VALUES.append(out["values"])
    return out


def prepared_data(dataset):
    """Path of the prepared .npz for a data set of the training grid."""
    n = TRAINING["datasets"][dataset]["n"]
    return f"{RES}/data/{dataset}_n{n}_seed{DATA_SEED}.npz"


def raw_inputs(wildcards):
    """Raw files a data set needs (none for synthetic data and the bundled digits)."""
    return RAW_FILES.get(wildcards.dataset, [])


def prepare_args(wildcards):
    spec = TRAINING["datasets"].get(wildcards.dataset, {})
    args = [f"--data {wildcards.dataset}", f"--n {wildcards.n}", f"--data-seed {wildcards.seed}"]
    if "d" in spec:
        args.append(f"--d {spec['d']}")
    return " ".join(args)


def gradient_error_data():
    """The prepared data set of the E7 gradient-error job (must be a training data set)."""
    dataset = ABLATIONS["gradient_error"]["dataset"]
    if dataset not in TRAINING["datasets"]:
        raise ValueError(
            f"ablations.gradient_error.dataset {dataset!r} must be one of training.datasets "
            f"({sorted(TRAINING['datasets'])})"
        )
    return prepared_data(dataset)


def train_data(wildcards):
    return prepared_data(wildcards.dataset)


def per_dataset(value, dataset, key, setting):
    """A setting value that may be given per data set ({data set: value})."""
    if not isinstance(value, dict):
        return value
    if dataset not in value:
        raise ValueError(
            f"training.settings.{setting}.{key} has no value for data set {dataset!r}; "
            f"add one (it has {sorted(value)})"
        )
    return value[dataset]


def run_options(seed):
    """The run options every training job shares (make_run_config's knobs by name)."""
    return {
        "seed": int(seed),
        "data_seed": DATA_SEED,
        "log_every": TRAINING["log_every"],
        "audit_every": TRAINING["audit_every"],
        "checkpoint_every": TRAINING["checkpoint_every"],
        "device": COMPUTE["device"],
        "precision": COMPUTE["precision"],
    }


def setting_options(dataset, setting_name, width):
    """A setting's run options at one data set and width (knobs by name, with values)."""
    options = {}
    for key, raw in TRAINING["settings"][setting_name].items():
        value = per_dataset(raw, dataset, key, setting_name)
        if key == "width_scale_ratio":  # trained width / width in the scale
            key, value = "width_scale", max(1, round(int(width) / value))
        options[key] = value  # every other key is a knob of overdeq's make_run_config
    return options


def option_flags(options):
    """`overdeq train` flags of run options: a knob's flag is --<knob>."""
    args = []
    for key, value in options.items():
        flag = f"--{key.replace('_', '-')}"
        if isinstance(value, bool):
            args.append(flag if value else f"--no-{flag[2:]}")
        else:
            args.append(f"{flag} {value}")
    return args


def train_args(wildcards):
    """The `overdeq train` flags of one grid point (every knob reaches the job as a param)."""
    n = TRAINING["datasets"][wildcards.dataset]["n"]
    width = int(wildcards.width)
    setting = setting_options(wildcards.dataset, wildcards.setting, width)
    shared = {k: v for k, v in run_options(wildcards.seed).items() if k not in setting}
    args = [
        f"--n {n}",
        f"--width {width}",
        *option_flags(shared),  # a setting's own value (e.g. its precision) replaces these
        f"--tag dataset={wildcards.dataset}",
        f"--tag setting={wildcards.setting}",
    ]
    if COMPUTE.get("memory_budget_gb") is not None:
        args.append(f"--memory-budget-gb {COMPUTE['memory_budget_gb']}")
    args += option_flags(setting)
    return " ".join(args)


def train_grid():
    """(data set, setting, width, seed) of every run, each once, in a stable order."""
    points = []
    for name, grid in TRAINING["grids"].items():
        for dataset in grid["datasets"]:
            if dataset not in TRAINING["datasets"]:
                raise ValueError(
                    f"training.grids.{name} uses data set {dataset!r}, which is not in "
                    f"training.datasets ({sorted(TRAINING['datasets'])})"
                )
            for setting in grid["settings"]:
                if setting not in TRAINING["settings"]:
                    raise ValueError(
                        f"training.grids.{name} uses setting {setting!r}, which is not in "
                        f"training.settings ({sorted(TRAINING['settings'])})"
                    )
                for width in grid["widths"]:
                    for seed in grid["seeds"]:
                        point = (dataset, setting, width, seed)
                        if point not in points:
                            points.append(point)
    return points


def train_run_dirs():
    """Every run directory of the training grids."""
    return [
        f"{RES}/train/{dataset}/{setting}/m{width}/seed{seed}"
        for dataset, setting, width, seed in train_grid()
    ]


def train_experiment(setting):
    """The experiment a training setting belongs to: the main grid's E4-E6, else E7."""
    main = TRAINING["grids"].get("main", {}).get("settings", [])
    return "E4-E6" if setting in main else "E7"


def plan_jobs():  # (RANDOM_DEQ: workflow/rules/random_deq.smk)
    """Every compute job of the tier with its parameters, as `overdeq plan --jobs` reads it."""
    train = [
        {
            "experiment": train_experiment(setting),
            "job": f"train/{dataset}/{setting}/m{width}/seed{seed}",
            "data": dataset,
            "n": TRAINING["datasets"][dataset]["n"],
            "d": TRAINING["datasets"][dataset].get("d"),
            "width": width,
            "options": {
                **run_options(seed),
                **setting_options(dataset, setting, width),
            },
            # a setting with its own precision keeps it in every column of the plan
            "setting_precision": TRAINING["settings"][setting].get("precision"),
        }
        for dataset, setting, width, seed in train_grid()
    ]
    gradient = ABLATIONS["gradient_error"]
    return {
        "tier": TIER,
        "precision": COMPUTE["precision"],
        "train": train,
        "random_deq": {exp: RANDOM_DEQ[exp] for exp in RANDOM_DEQ_EXPERIMENTS},
        "gradient_error": {
            **gradient,
            "n": TRAINING["datasets"][gradient["dataset"]]["n"],
            "d": TRAINING["datasets"][gradient["dataset"]].get("d"),
        },
    }


def compute_benchmarks():
    """Snakemake benchmark files of every compute job, by experiment (for the compute table)."""
    train = {}
    for dataset, setting, width, seed in train_grid():
        train.setdefault(train_experiment(setting), []).append(
            f"{BENCH}/train/{dataset}/{setting}/m{width}/seed{seed}.tsv"
        )
    random = {f"E{e[1:]}": [f"{BENCH}/random_deq/{e}.tsv"] for e in ("e1", "e2", "e3", "e10")}
    return {**random, **train, "E7-gradient": [f"{BENCH}/ablations/gradient_error.tsv"]}


def compute_benchmark_files():
    return [f for files in compute_benchmarks().values() for f in files]


def train_summaries():
    return [f"{d}/summary.json" for d in train_run_dirs()]


def train_histories():
    return [f"{d}/history.csv" for d in train_run_dirs()]


def every_output():
    """Every file the pipeline makes but the raw downloads, for `rule all`.

    Snakemake checks a job for missing outputs only when the job is a target or something
    downstream must run anyway; a missing intermediate file (one a failed job removed, or
    one deleted by hand) whose consumers' outputs exist is otherwise left missing, and the
    next run says "Nothing to be done". Asking for every output makes each job a target.
    Raw downloads are left out: they are fetched when a job needs them.
    """
    random = [
        random_deq_table(exp, name)
        for exp in RANDOM_DEQ_EXPERIMENTS
        for name in ("rows.csv", "meta.json") + (("summary.csv",) if exp != "e10" else ())
    ]
    return [
        *[prepared_data(d) for d in TRAINING["datasets"]],
        *random,
        *train_summaries(),
        *train_histories(),
        f"{RES}/aggregate/train_runs.csv",
        f"{RES}/aggregate/train_history.csv",
        f"{RES}/ablations/gradient_error.csv",
        *compute_benchmark_files(),
        *PAPER_FIGURES,
        *PAPER_TABLES,
        *PAPER_VALUES,
        *REPORT_FILES,
        "paper/generated/values.tex",
        f"{RES}/claims.json",
        f"{RES}/verify.json",
        "paper/main.pdf",
    ]
