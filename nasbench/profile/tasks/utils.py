"""Functions the task YAMLs name with ``!function utils.<name>`` (lm-eval loads this file beside them)."""

import re

import numpy as np


def _preprocess(text):
    # lm-eval's hellaswag preprocess: brackets are artifacts of the WikiHow part of HellaSwag
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def hellaswag_docs(dataset):
    def process(doc):
        return {"query": _preprocess(doc["ctx"]), "choices": [_preprocess(e) for e in doc["endings"]],
                "label": int(doc["label"])}

    return dataset.map(process)


def process_results_mc2(doc, results):
    """lm-eval's mc2: probability mass of the true answers among all answers (log-likelihoods -> normalised)."""
    ll, _ = zip(*results)
    probs = np.exp(np.array(ll))
    probs = probs / probs.sum()
    labels = np.array(doc["mc2_targets"]["labels"])
    return {"mc2": float(probs[labels == 1].sum())}
