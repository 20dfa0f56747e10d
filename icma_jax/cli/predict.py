"""`icma-jax predict (--run DIR | --model M --database FILE --task T) (--smiles S | --caption T | --input FILE)`:
answers for new molecules or captions, with the run's retrieval, prompts and decoding (icma_jax.run.predict)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="caption a molecule / generate a molecule with a run's retrieval and model",
                       description=__doc__)
    p.add_argument("--run", default=None, help="a run directory (train.py --workdir)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
    p.add_argument("--model", default=None, help="without --run: a model (smollm2-135m, HF directory, .gguf)")
    p.add_argument("--database", default=None, help="without --run: the data file examples are retrieved from")
    p.add_argument("--task", choices=("mol2cap", "cap2mol"), default=None, help="without --run: the task")
    p.add_argument("--n-examples", type=int, default=2, help="without --run: context examples per prompt")
    p.add_argument("--method", default="auto", help="without --run: retrieval method (auto, bm25, morgan, ...)")
    p.add_argument("--sample", action="store_true", help="without --run: sample (the paper's settings), not greedy")
    p.add_argument("--max-new-tokens", type=int, default=None, help="without --run: default from the database")
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--smiles", help="a molecule to caption (Mol2Cap)")
    query.add_argument("--caption", help="a description to turn into a molecule (Cap2Mol)")
    query.add_argument("--input", help="a data file (CID, SMILES, description) or one query per line")
    p.add_argument("--show-context", action="store_true", help="also print the context examples and their scores")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default: the run's train.seed)")
    p.add_argument("--out", default=None, help="also write the answers to FILE.tsv or FILE.jsonl")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from icma_jax.run import predict as predict_lib

    if args.out and not args.out.endswith((".tsv", ".jsonl")):
        raise ValueError(f"--out {args.out}: the name must end in .tsv or .jsonl")
    if args.run is not None:
        if args.model or args.database or args.task:
            raise ValueError("--run takes the model, database and task from the run: drop --model/--database/--task")
        task = predict_lib.export.read_run_config(args.run).data.task
    elif not (args.model and args.database and args.task):
        raise ValueError("give --run DIR, or --model, --database and --task")
    else:
        task = args.task
    if args.input:
        queries, where = predict_lib.read_queries(args.input, task)
    else:
        flag, given = ("--smiles", args.smiles) if args.smiles is not None else ("--caption", args.caption)
        wanted = "--smiles" if task == "mol2cap" else "--caption"
        if flag != wanted:
            raise ValueError(f"the task is {task}: give {wanted} (or --input), not {flag}")
        queries, where = [given], [flag]
    predict_lib.query_split(task, queries, where)  # bad queries fail here, before a model is loaded
    if args.run is not None:
        predictor = predict_lib.from_run(args.run, args.step, args.seed)
    else:
        predictor = predict_lib.untuned(args.model, args.database, args.task, n_examples=args.n_examples,
                                        method=args.method, decoding="sample" if args.sample else "greedy",
                                        seed=42 if args.seed is None else args.seed,
                                        max_new_tokens=args.max_new_tokens)
    preds = predictor(queries, where)
    for i, pred in enumerate(preds):
        print(("\n" if i else "") + predict_lib.format_prediction(pred, args.show_context))
    if args.out:
        print(f"wrote {predict_lib.write_predictions(args.out, preds)}")
    return 0
