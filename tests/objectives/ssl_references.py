"""Float64 references for the non-InfoNCE objectives, written from the papers' formulas.

Each is the textbook form (explicit loops over views or crops, materialised matrices,
masks), independent of the vectorised code under test. Also the small input helpers the
objective tests share.
"""

import torch
import torch.nn.functional as F


def views(seed: int, *shape: int, dtype=torch.float64, scale: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)


def loss_and_grads(fn, *inputs):
    """``fn(*inputs)`` and its gradients with respect to every input (fresh leaves)."""
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    loss = fn(*leaves)
    return loss.detach(), torch.autograd.grad(loss, leaves)


def barlow_twins_reference(z1, z2, lambda_offdiagonal=5.1e-3, eps=1e-5):
    """Zbontar et al. 2021, eq. 1, with batch-norm standardisation (biased variance)."""
    a, b = z1.double(), z2.double()
    n = a.shape[0]
    a = (a - a.mean(0)) / torch.sqrt(a.var(0, unbiased=False) + eps)
    b = (b - b.mean(0)) / torch.sqrt(b.var(0, unbiased=False) + eps)
    c = a.T @ b / n
    eye = torch.eye(c.shape[0], dtype=torch.bool)
    return ((1 - c[eye]) ** 2).sum() + lambda_offdiagonal * (c[~eye] ** 2).sum()


def vicreg_reference(z1, z2, lam=25.0, mu=25.0, nu=1.0, gamma=1.0, eps=1e-4):
    """Bardes et al. 2022, eqs. 1-6, with the official code's halved variance term."""
    a, b = z1.double(), z2.double()
    n, d = a.shape
    invariance = F.mse_loss(a, b)

    def variance(z):
        return torch.relu(gamma - torch.sqrt(z.var(0) + eps)).mean()

    def covariance(z):
        centred = z - z.mean(0)
        cov = centred.T @ centred / (n - 1)  # unbiased, (D, D)
        return (cov[~torch.eye(d, dtype=torch.bool)] ** 2).sum() / d

    return (
        lam * invariance
        + mu * (variance(a) + variance(b)) / 2
        + nu * (covariance(a) + covariance(b))
    )


def sinkhorn_reference(scores, epsilon=0.05, iterations=3):
    """SwAV's Sinkhorn-Knopp (Caron et al. 2020, Algorithm / appendix A.1) on (B, K) scores."""
    q = torch.exp(scores.double() / epsilon).T  # (K, B)
    q = q / q.sum()
    k, b = q.shape
    for _ in range(iterations):
        q = q / q.sum(1, keepdim=True) / k
        q = q / q.sum(0, keepdim=True) / b
    return (q * b).T


def swav_reference(scores, temperature=0.1, assign_views=2, epsilon=0.05, iterations=3):
    """Swapped prediction over crops (Caron et al. 2020, eq. 1 and the multi-crop loss).

    ``scores``: list of (B, K) prototype scores per crop, the first ``assign_views`` global.
    """
    total = 0.0
    for a in range(assign_views):
        codes = sinkhorn_reference(scores[a].detach(), epsilon, iterations)
        sub = 0.0
        for v in range(len(scores)):
            if v != a:
                log_p = torch.log_softmax(scores[v].double() / temperature, dim=1)
                sub = sub - (codes * log_p).sum(1).mean()
        total = total + sub / (len(scores) - 1)
    return total / assign_views


def dino_reference(student, teacher, center, student_temperature=0.1, teacher_temperature=0.04):
    """Caron et al. 2021, Algorithm 1: teacher softmax of the centred outputs vs each other crop."""
    total, terms = 0.0, 0
    for t, out_t in enumerate(teacher):
        p_t = torch.softmax((out_t.double() - center.double()) / teacher_temperature, dim=1)
        for s, out_s in enumerate(student):
            if s == t:
                continue
            log_p_s = torch.log_softmax(out_s.double() / student_temperature, dim=1)
            total = total - (p_t * log_p_s).sum(1).mean()
            terms += 1
    return total / terms


def moco_reference(q, k, negatives, temperature):
    """He et al. 2020 (Algorithm 1): logits [q.k, q.queue] / T, cross-entropy to index 0."""
    q = F.normalize(q.double(), dim=1)
    k = F.normalize(k.double(), dim=1)
    positive = (q * k).sum(1, keepdim=True)
    negative = q @ negatives.double().T
    logits = torch.cat([positive, negative], 1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))


def moco_v3_reference(q, k, temperature):
    """Chen, Xie & He 2021 (Algorithm 1, ctr): logits q @ k^T / T, labels the diagonal."""
    q = F.normalize(q.double(), dim=1)
    k = F.normalize(k.double(), dim=1)
    return F.cross_entropy(q @ k.T / temperature, torch.arange(len(q)))
