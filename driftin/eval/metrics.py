"""Precision / recall on the k-NN feature manifold (Kynkäänniemi et al. 2019) and the Inception-Score
analogue computed with the evaluation net's classifier, plus the one function that turns features
into the reported metric dict."""
from __future__ import annotations

import numpy as np
import torch

from driftin.eval.fd import feature_stats, frechet_distance


def _as_tensor(x, device=None) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=torch.float32, device=device)


def knn_radii(feats: torch.Tensor, k: int = 3, chunk: int = 2048) -> torch.Tensor:
    """Distance from each point to its k-th nearest neighbour in the same set (itself excluded)."""
    out = []
    for i in range(0, len(feats), chunk):
        d = torch.cdist(feats[i : i + chunk], feats)  # [c, N]
        out.append(d.kthvalue(k + 1, dim=1).values)  # +1: the point itself sits at distance 0
    return torch.cat(out)


def _coverage(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, chunk: int = 2048) -> float:
    """Fraction of queries inside at least one ball B(support_j, radii_j)."""
    inside = 0
    for i in range(0, len(queries), chunk):
        d = torch.cdist(queries[i : i + chunk], support)  # [c, M]
        inside += (d <= radii[None]).any(1).sum().item()
    return inside / len(queries)


def precision_recall(real, fake, k: int = 3, device=None, chunk: int = 2048) -> tuple[float, float]:
    """Precision: share of fake samples on the real manifold; recall: share of real samples on the fake one."""
    real, fake = _as_tensor(real, device), _as_tensor(fake, device)
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"need more than k={k} samples per set, got {len(real)} real, {len(fake)} fake")
    precision = _coverage(fake, real, knn_radii(real, k, chunk), chunk)
    recall = _coverage(real, fake, knn_radii(fake, k, chunk), chunk)
    return precision, recall


def is_analogue(probs, splits: int = 1) -> float:
    """exp(E_x KL(p(y|x) || p(y))) from class probabilities [N, K]; in [1, K].

    K for confident predictions spread evenly over the classes, 1 when every sample gets the same
    prediction. splits > 1 averages the score over that many chunks, as the original IS does."""
    p = np.asarray(probs, dtype=np.float64)
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(0, keepdims=True)
        # xlogy: 0 * log 0 = 0, so exactly one-hot predictions are fine
        kl = (_xlogy(part, part) - _xlogy(part, np.broadcast_to(py, part.shape))).sum(1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores))


def _xlogy(x, y):
    from scipy.special import xlogy

    return xlogy(x, y)


def compute_metrics(feats, probs, ref: dict, labels=None, pr_n: int = 10_000, k: int = 3, seed: int = 0, device=None) -> dict:
    """FD vs the reference Gaussian, precision/recall on pr_n-sample subsets, IS analogue, and (given the
    conditioning labels) how often the evaluation net agrees with them."""
    feats = np.asarray(feats, dtype=np.float64)
    mu, sigma = feature_stats(feats)
    out = {"fd": frechet_distance(mu, sigma, ref["mu"], ref["sigma"])}
    rng = np.random.default_rng(seed)  # a fixed subset: P/R on all 50k would be O(N^2) for little gain
    sub = feats[rng.permutation(len(feats))[:pr_n]] if len(feats) > pr_n else feats
    real = ref["pr_feats"][:pr_n]
    out["precision"], out["recall"] = precision_recall(real, sub, k=k, device=device)
    out["is_analogue"] = is_analogue(probs)
    if labels is not None:
        out["class_acc"] = float((np.asarray(probs).argmax(1) == np.asarray(labels)).mean())
    return out
