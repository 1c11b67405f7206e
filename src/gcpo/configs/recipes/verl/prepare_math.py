"""Write the MATH data of the verl recipe as verl parquet files.

    python configs/recipes/verl/prepare_math.py --out ~/data/math

Train: the 7.5k MATH training problems (hub ``DigitalLearningGmbH/MATH-lighteval``); validation:
MATH500 (hub ``HuggingFaceH4/MATH-500``, or ``--math500 FILE.jsonl``). Each row is what verl's
``RLHFDataset`` reads: ``data_source``, ``prompt`` (chat messages), ``ability``,
``reward_model`` (``style: rule``, ``ground_truth``: the gold final answer) and ``extra_info``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


def _row(source: str, split: str, index: int, problem: str, answer: str) -> dict[str, Any]:
    return {
        "data_source": source,
        "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": problem}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": answer},
        "extra_info": {"split": split, "index": index},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="directory for train.parquet and test.parquet")
    p.add_argument("--math500", help="local MATH500 test.jsonl instead of the hub copy")
    args = p.parse_args()

    import datasets

    from gcpo.tasks.math import extract_boxed

    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    train_src = "DigitalLearningGmbH/MATH-lighteval"
    train = datasets.load_dataset(train_src, split="train")
    rows = []
    for i, r in enumerate(train):
        answer = extract_boxed(r["solution"])
        if answer:
            rows.append(_row(train_src, "train", i, r["problem"], answer))
    datasets.Dataset.from_list(rows).to_parquet(str(out / "train.parquet"))
    test_src = "HuggingFaceH4/MATH-500"
    if args.math500:
        lines = Path(args.math500).read_text().splitlines()
        test = [json.loads(line) for line in lines if line.strip()]
    else:
        test = list(datasets.load_dataset(test_src, split="test"))
    test_rows = [_row(test_src, "test", i, r["problem"], r["answer"]) for i, r in enumerate(test)]
    datasets.Dataset.from_list(test_rows).to_parquet(str(out / "test.parquet"))
    print(f"wrote {len(rows)} train and {len(test_rows)} test rows to {out}")


if __name__ == "__main__":
    main()
