"""The ``workbench`` command (also ``python -m workbench``)."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

#: Errors whose message is the library's own sentence; any other kind is named before its message.
SELF_EXPLAINED = (ValueError, TypeError, IndexError, FileNotFoundError)
PACKAGE = Path(__file__).resolve().parents[1]


def _layers(text: str | None) -> list[int] | None:
    if text is None or text == "all":
        return None
    parts = [t.strip() for t in text.split(",") if t.strip()]
    if not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"layers must be 'all' or comma-separated integers >= 0, got {text!r}")
    return [int(part) for part in parts]


def _integer(minimum: int):
    """An argparse type: an integer of at least ``minimum``, so that a bad count or layer is refused
    before any model is loaded (a layer past the model's depth is refused right after loading it)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return value

    return parse


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, ``workbench <command>: error: <message>``, exit status 2
    (``--help`` shows the usage)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from workbench.core.models import EMBEDDED_MODEL

    parser = _Parser(
        prog="workbench",
        description="Measure how a steering instruction changes a model's activations, token by token (Delta_PS).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="triplets -> Delta_PS -> offline HTML report (the `make demo` job)")
    demo.add_argument("--out", default="reports/demo", help="output directory (default: reports/demo)")
    demo.add_argument("--model", default=EMBEDDED_MODEL, help="model name (default: the embedded SmolLM2-135M)")
    demo.add_argument("--attribute", default="pirate", help="bundled attribute (see `workbench attributes`)")
    demo.add_argument("--n-questions", type=_integer(1), default=None,
                      help="training questions (default: the config's, 60)")
    demo.add_argument("--max-new-tokens", type=_integer(1), default=None,
                      help="response length (default: the config's, 48)")
    demo.add_argument("--seed", type=int, default=0)

    demo.add_argument("--full", action="store_true",
                      help="the larger experiment (all questions, more methods; an hour or more on 2 cores)")
    demo.add_argument("--no-evaluation", action="store_true",
                      help="only the Delta_PS report: skip training and comparing the steering methods")
    demo.add_argument("--efficiency", action="store_true",
                      help="also the data-efficiency comparison (prompt, Const-DiM, A-PSR, LoRA r8, Fine-tune "
                           "trained on 8, 16, 32 and all kept triplets): about 25 more minutes on 2 cores")

    ev = sub.add_parser("evaluate", help="train every steering method on an attribute and write the TA@C table "
                                         "and faithfulness curves (resumable)")
    ev.add_argument("--attribute", default="pirate", help="bundled attribute (default: pirate)")
    ev.add_argument("--out", default=None, help="run directory (default: runs/<attribute>)")
    ev.add_argument("--model", default=EMBEDDED_MODEL)
    ev.add_argument("--full", action="store_true", help="the larger configuration (see ExperimentConfig.full)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--layer", type=_integer(0), default=None,
                    help="layer of single-layer methods (default: the middle)")
    ev.add_argument("--methods", default=None,
                    help="comma-separated, e.g. 'Const-DiM,Const-MSE,S-PSR,A-PSR,A-PSR r4' (default: the config's)")
    ev.add_argument("--plus-prompt", default=None, help="the method also stacked on the prompt (default: A-PSR; 'none': no stacking)")
    ev.add_argument("--n-train", type=_integer(1), default=None, help="training questions (default: the config's)")
    ev.add_argument("--judge", default="offline", choices=["offline", "llm"],
                    help="who scores attribute and coherence in the comparison (default: the offline judges)")
    ev.add_argument("--judge-style", default="score", choices=["score", "rating"],
                    help="LLM judge: 0-100 scores from log-probabilities, or AxBench 0/1/2 ratings")
    ev.add_argument("--judge-base-url", default=None,
                    help="OpenAI-compatible API root (else WORKBENCH_JUDGE_BASE_URL / OPENAI_BASE_URL); the API key "
                         "is read only from WORKBENCH_JUDGE_API_KEY or OPENAI_API_KEY, never from the command line")
    ev.add_argument("--judge-model", default=None, help="judge model name (else WORKBENCH_JUDGE_MODEL)")
    ev.add_argument("--judge-timeout", type=float, default=None, metavar="SECONDS",
                    help="LLM judge: seconds per request attempt (else WORKBENCH_JUDGE_TIMEOUT_S, default 120)")
    ev.add_argument("--judge-retries", type=_integer(0), default=None, metavar="N",
                    help="LLM judge: retries of a timed-out, refused or 429/5xx request "
                         "(else WORKBENCH_JUDGE_MAX_RETRIES, default 4)")
    ev.add_argument("--judge-max-total", type=float, default=None, metavar="SECONDS",
                    help="LLM judge: budget of one judgement, retries and waits included "
                         "(else WORKBENCH_JUDGE_MAX_TOTAL_S, default 300)")
    ev.add_argument("--judge-breaker-after", type=_integer(0), default=None, metavar="N",
                    help="LLM judge: stop sending requests after N connection failures in a row; the missing "
                         "judgements are retried on the next run (else WORKBENCH_JUDGE_BREAKER_AFTER, default 6; 0: never)")

    claims = sub.add_parser("claims", help="the paper's five findings on every bundled attribute, with intervals and "
                                           "verdicts: claims.csv, claims.md and figures (resumable; `make claims`)")
    claims.add_argument("--out", default="reports/claims", help="output folder (default: reports/claims)")
    claims.add_argument("--model", default=EMBEDDED_MODEL)
    claims.add_argument("--attributes", default="all", help="comma-separated bundled attributes (default: all)")
    claims.add_argument("--size", default="default", choices=["default", "full", "tiny"],
                        help="default: fits about 2 hours on 2 cores for every attribute; full: every question, "
                             "longer answers (many hours); tiny: a smoke test")
    claims.add_argument("--no-instructions", action="store_true", help="skip finding 5 (instruction following)")
    claims.add_argument("--seed", type=int, default=0)
    claims.add_argument("--stored-only", action="store_true",
                        help="compute nothing: write the table of what the output folder holds so far")

    figs = sub.add_parser("figures", help="write the paper figures of a run (HTML, and PNG/SVG/PDF through kaleido)")
    figs.add_argument("--run", default="reports/demo", help="a run directory written by `demo` or `evaluate`; "
                                                            "run there first if it holds no results")
    figs.add_argument("--out", default="figures")
    figs.add_argument("--model", default=EMBEDDED_MODEL)
    figs.add_argument("--formats", default="png,svg,pdf", help="static formats ('' for HTML only)")

    attrs = sub.add_parser("attributes", help="list the bundled attributes")
    attrs.add_argument("--verbose", action="store_true", help="also print instructions and question counts")

    check = sub.add_parser("check-attributes", help="measure how often prompting succeeds, per attribute")
    check.add_argument("--attributes", default="all", help="comma-separated names (default: all bundled)")
    check.add_argument("--n", type=_integer(1), default=20, help="held-out questions per condition (default 20)")
    check.add_argument("--model", default=EMBEDDED_MODEL)
    check.add_argument("--seed", type=int, default=0)

    trip = sub.add_parser("triplets", help="sample and judge prompt-steered triplets into a directory")
    trip.add_argument("--attribute", required=True)
    trip.add_argument("--out", required=True)
    trip.add_argument("--model", default=EMBEDDED_MODEL)
    trip.add_argument("--split", default="train", choices=["train", "validation", "test"])
    trip.add_argument("--n-questions", type=_integer(1), default=None)
    trip.add_argument("--samples-per-question", type=_integer(1), default=1)
    trip.add_argument("--placement", default="system", choices=["system", "user"])
    trip.add_argument("--max-new-tokens", type=_integer(1), default=64)
    trip.add_argument("--seed", type=int, default=0)

    ext = sub.add_parser("extract", help="extract Delta_PS for the kept triplets of a triplet directory")
    ext.add_argument("--triplets", required=True, help="a directory written by `workbench triplets`")
    ext.add_argument("--out", required=True)
    ext.add_argument("--model", default=EMBEDDED_MODEL)
    ext.add_argument("--layers", type=_layers, default=None, help="'all' or e.g. 0,5,10")
    ext.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    ext.add_argument("--batch-size", type=_integer(1), default=8)
    ext.add_argument("--no-local", action="store_true", help="skip the patched pass (no local deltas)")

    gate = sub.add_parser("gate", help="learn a policy gate from two prompt files (or a bundled scenario) and report "
                                       "its held-out precision, recall and F1")
    gate.add_argument("--positive", default=None, help="prompts the gate must flag: one per line, or a JSON list")
    gate.add_argument("--negative", default=None, help="prompts the gate must leave alone (same format)")
    gate.add_argument("--scenario", default=None,
                      help="a bundled scenario instead of the two files (e.g. sea_and_ships), with its own splits")
    gate.add_argument("--model", default=EMBEDDED_MODEL)
    gate.add_argument("--layers", type=_layers, default=None, help="layers to search: 'all' (default) or e.g. 4,8,12")
    gate.add_argument("--pool", default="mean", choices=["mean", "last", "both"], help="prompt tokens read (default: mean)")
    gate.add_argument("--method", default="mean-diff", choices=["mean-diff", "pca"])
    gate.add_argument("--seed", type=_integer(0), default=0,
                      help="the 60/20/20 split of the prompt files and the bootstrap")
    gate.add_argument("--out", default=None, help="save the gate here (a .safetensors file)")

    ext.add_argument("--kinds", default=None, help="what to store, e.g. 'acc' or 'base,acc,loc' (default: all; "
                                                   "base,acc with --no-local)")
    plan = sub.add_parser("plan", help="store size, forward passes and time of a Delta_PS extraction, before running it")
    plan.add_argument("--model", default=EMBEDDED_MODEL)
    plan.add_argument("--triplets", type=_integer(1), required=True, help="how many triplets the run will extract")
    plan.add_argument("--tokens", type=_integer(1), default=64, help="response tokens per triplet (default 64)")
    plan.add_argument("--layers", type=_layers, default=None, help="'all' or e.g. 0,5,10")
    plan.add_argument("--kinds", default="base,acc,loc", help="stored kinds (default: base,acc,loc)")
    plan.add_argument("--dtype", default="float16", choices=["float16", "float32", "bfloat16"])
    plan.add_argument("--batch-size", type=_integer(1), default=8)
    plan.add_argument("--out", default=None, help="where the store would go (its free space is checked)")
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", help="on an error, also print its traceback")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. An error is one line on stderr, ``workbench <command>: error: <message>``,
    with exit status 2 (its traceback too under ``--debug``); Ctrl-C exits with 130."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print(f"workbench {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # every failure becomes one line; --debug adds its traceback
        if args.debug:
            traceback.print_exc()
        print(f"workbench {args.command}: error: {describe_error(err)}", file=sys.stderr)
        return 2


def describe_error(err: BaseException) -> str:
    """One line saying what went wrong: the message, after the exception's type unless it is one of
    :data:`SELF_EXPLAINED`, with the file an ``OSError`` names when its message does not, and, for an
    error raised inside a dependency (pyarrow, safetensors, torch), the workbench function it came
    through: ``OSError: Couldn't deserialize thrift: ... (in load, workbench/data/triplets.py:129)``."""
    message = " ".join(str(err).split())
    if not message:
        message = type(err).__name__
    elif not isinstance(err, SELF_EXPLAINED):
        message = f"{type(err).__name__}: {message}"
    filename = getattr(err, "filename", None)
    if filename is not None and str(filename) not in message:
        message += f" ({filename})"
    where = _dependency_caller(err)
    return f"{message} (in {where})" if where else message


def _dependency_caller(err: BaseException) -> str | None:
    """``function, workbench/file.py:line`` of the innermost workbench frame an error passed through,
    when it was raised below it, in a dependency; None when the workbench raised it itself."""
    frames = traceback.extract_tb(err.__traceback__)
    ours = [f for f in frames if Path(f.filename).resolve().is_relative_to(PACKAGE)]
    if not ours or ours[-1] is frames[-1]:
        return None
    frame = ours[-1]
    return f"{frame.name}, {Path(frame.filename).resolve().relative_to(PACKAGE.parent)}:{frame.lineno}"


def _run(args: argparse.Namespace) -> int:
    if args.command == "attributes":
        from workbench.data.attributes import list_attributes, load_attribute

        for name in list_attributes():
            attr = load_attribute(name)
            print(f"{name}: {attr.description}")
            if args.verbose:
                print(f"  instructions: {list(attr.instructions)}")
                print(f"  questions: " + ", ".join(f"{s} {len(attr.questions(s))}" for s in ("train", "validation", "test")))
        return 0
    if args.command == "check-attributes":
        from workbench.core.models import load_model
        from workbench.data.attributes import list_attributes, load_attribute
        from workbench.evaluation.attribute_check import check_attributes, markdown_table

        names = list_attributes() if args.attributes == "all" else args.attributes.split(",")
        attributes = [load_attribute(name) for name in names]  # an unknown name is refused before the model loads
        table = check_attributes(load_model(args.model), attributes, args.n, seed=args.seed)
        print(markdown_table(table))
        return 0
    if args.command == "demo":
        import json

        from workbench.app.demo import DemoConfig, run_demo
        from workbench.app.experiment import ExperimentConfig

        make = ExperimentConfig.full if args.full else ExperimentConfig.quick
        experiment = make(attribute=args.attribute, seed=args.seed,
                          **({"n_train": args.n_questions} if args.n_questions is not None else {}),
                          **({"max_new_tokens": args.max_new_tokens} if args.max_new_tokens is not None else {}))
        config = DemoConfig(model=args.model, experiment=experiment, evaluate=not args.no_evaluation,
                            efficiency=args.efficiency)
        summary = run_demo(args.out, config)
        print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
        print(f"report: {Path(args.out) / 'index.html'}")
        return 0
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command == "figures":
        return _figures(args)
    if args.command == "claims":
        return _claims(args)
    if args.command == "triplets":
        from workbench.core.models import load_model
        from workbench.data.attributes import load_attribute
        from workbench.data.triplets import TripletConfig, build_triplets, summarize

        config = TripletConfig(split=args.split, n_questions=args.n_questions, samples_per_question=args.samples_per_question,
                               placement=args.placement, max_new_tokens=args.max_new_tokens, seed=args.seed)
        attribute = load_attribute(args.attribute)  # an unknown name is refused before the model loads
        triplets = build_triplets(load_model(args.model), attribute, args.out, config)
        print(summarize(triplets))
        return 0
    if args.command == "gate":
        return _gate(args)
    if args.command == "extract":
        from workbench.activations.deltas import extract_deltas
        from workbench.core.models import load_model
        from workbench.data.triplets import TripletSet

        model = load_model(args.model)
        triplets = TripletSet.load(args.triplets)
        if triplets.meta.get("model_id") != model.model_id:
            raise ValueError(f"the triplets were sampled from {triplets.meta.get('model_id')!r}, not {model.model_id!r}")
        kinds = None if args.kinds is None else [k.strip() for k in args.kinds.split(",") if k.strip()]
        store = extract_deltas(model, triplets.pairs(model.tokenizer), args.out, layers=args.layers,
                               batch_size=args.batch_size, dtype=args.dtype, local=not args.no_local, kinds=kinds)
        print(f"{store.n_tokens} tokens x {len(store.layers)} layers in {len(store.shards)} shards at {store.directory}")
        return 0
    if args.command == "plan":
        from workbench.activations.plan import plan_extraction
        from workbench.core.models import load_model

        plan = plan_extraction(load_model(args.model), args.triplets, response_tokens=args.tokens, layers=args.layers,
                               kinds=[k.strip() for k in args.kinds.split(",") if k.strip()], dtype=args.dtype,
                               batch_size=args.batch_size, directory=args.out)
        print(plan.describe())
        return 0
    raise AssertionError(args.command)


def _evaluate(args: argparse.Namespace) -> int:
    import pandas as pd

    from workbench.app.experiment import ExperimentConfig, run_experiment
    from workbench.core.models import load_model
    from workbench.data.attributes import load_attribute

    attribute = load_attribute(args.attribute)
    overrides = {"attribute": attribute.name, "seed": args.seed, "layer": args.layer}
    if args.methods is not None:
        overrides["methods"] = tuple(m.strip() for m in args.methods.split(",") if m.strip())
        if args.plus_prompt is None:  # keep the default stacking only where A-PSR is trained
            overrides["plus_prompt"] = "A-PSR" if "A-PSR" in overrides["methods"] else None
    if args.plus_prompt is not None:
        overrides["plus_prompt"] = None if args.plus_prompt == "none" else args.plus_prompt
    if args.n_train is not None:
        overrides["n_train"] = args.n_train
    config = (ExperimentConfig.full if args.full else ExperimentConfig.quick)(**overrides)
    judges = {}
    if args.judge == "llm":
        from workbench.judges.llm_judges import make_llm_judges

        judge_config = _judge_config(args)
        if judge_config is None:
            raise ValueError("--judge llm needs an endpoint: set WORKBENCH_JUDGE_BASE_URL and WORKBENCH_JUDGE_MODEL "
                             "(and WORKBENCH_JUDGE_API_KEY for a hosted API), or pass --judge-base-url and --judge-model")
        judges = dict(zip(("attribute_judge", "coherence_judge"),
                          make_llm_judges(judge_config, attribute.description, args.judge_style)))
    out = Path(args.out or f"runs/{attribute.name}")
    result = run_experiment(load_model(args.model), config, out, **judges)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(result.comparison.table().round(2).to_string(index=False))
        faith = result.faithfulness.pivot(index="layer", columns="method", values="rel_rmse")
        print("\nrelative RMSE to the prompt-steered activations (1 = no better than not steering):")
        print(faith.iloc[:: max(1, len(faith) // 8)].round(3).to_string())
    print(f"\ntables: {out / 'results.csv'}, {out / 'faithfulness.csv'}")
    return 0


def _claims(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from workbench.app.claims import ClaimsConfig, run_claims

    attributes = () if args.attributes == "all" else tuple(a.strip() for a in args.attributes.split(",") if a.strip())
    config = ClaimsConfig.sized(args.size, attributes=attributes, **({"instructions": ()} if args.no_instructions else {}))
    config = replace(config, experiment=replace(config.experiment, seed=args.seed))
    result = run_claims(args.model, config, args.out, stored_only=args.stored_only)  # loads the model only if needed
    print(result.markdown())
    return 0


def _figures(args: argparse.Namespace) -> int:
    import json

    from workbench.app.experiment import ExperimentConfig, run_experiment
    from workbench.core.models import load_model
    from workbench.viz.figures import paper_figures, write_figures

    run = Path(args.run)
    meta_path = run / "experiment.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{run} holds no experiment ({meta_path.name} is missing): run `make demo` or "
                                f"`workbench evaluate --out {run}` first")
    meta = json.loads(meta_path.read_text())
    model = load_model(args.model)
    if meta.get("model") != model.model_id:
        raise ValueError(f"{run} was made with {meta.get('model')!r}, not {model.model_id!r}; pass --model")
    result = run_experiment(model, ExperimentConfig.from_dict(meta["config"]), run)  # everything stored is reused
    formats = [f for f in args.formats.split(",") if f.strip()]
    written, problem = write_figures(paper_figures(model, result), args.out, formats)
    for path in written:
        print(path)
    if problem:
        print(f"\nonly the HTML figures were written: {problem}", file=sys.stderr)
        return 1
    return 0


def _gate(args: argparse.Namespace) -> int:
    from workbench.core.models import load_model
    from workbench.evaluation.gating import learn_gate, load_scenario, read_prompt_file, scenario_from_prompts

    if args.scenario is not None:
        if args.positive or args.negative:
            raise ValueError("give either --scenario or --positive and --negative, not both")
        scenario = load_scenario(args.scenario)
    elif args.positive and args.negative:
        scenario = scenario_from_prompts(read_prompt_file(args.positive), read_prompt_file(args.negative), seed=args.seed)
    else:
        raise ValueError("--positive and --negative (two prompt files) or --scenario are needed")
    pools = ("mean", "last") if args.pool == "both" else (args.pool,)
    search, metrics = learn_gate(load_model(args.model), scenario, layers=args.layers, pools=pools, method=args.method,
                                 seed=args.seed)
    gate = search.gate
    sizes = {s: [len(x) for x in scenario.split(s)] for s in ("train", "validation", "test")}
    print(f"gate: layer {gate.layer}, pool {gate.pool}, score {gate.comparator} {gate.threshold:.4f} "
          f"(validation F1 {gate.meta['validation']['f1']:.3f}); prompts (positive, negative) {sizes}")
    print("held-out:")
    print(metrics.round(3).to_string(index=False))
    if args.out:
        print(f"saved: {gate.save(args.out)}")
    return 0


def _judge_config(args: argparse.Namespace):
    """The LLM judge of :meth:`LLMJudgeConfig.from_env`, with the command line's ``--judge-*`` values in
    place of the environment's (the API key only ever comes from the environment); None when no
    endpoint is configured."""
    import os

    from workbench.judges.llm_client import ENV_SETTINGS, LLMJudgeConfig

    flags = {"WORKBENCH_JUDGE_BASE_URL": args.judge_base_url, "WORKBENCH_JUDGE_MODEL": args.judge_model}
    given = {"timeout_s": args.judge_timeout, "max_retries": args.judge_retries,
             "max_total_s": args.judge_max_total, "breaker_after": args.judge_breaker_after}
    flags.update({ENV_SETTINGS[name][0]: str(value) for name, value in given.items() if value is not None})
    return LLMJudgeConfig.from_env({**os.environ, **{k: v for k, v in flags.items() if v}})
