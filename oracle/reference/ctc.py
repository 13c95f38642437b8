"""The mathematical CTC loss, for references that call `optax.ctc_loss`.

optax's own code is the forward recursion in log space with log 0 written as its `log_epsilon`
(-1e5): each forbidden transition adds -1e5 instead of -inf. That is what the jax impl row runs
and what its exact replay explains; a reference needs the mathematics. The exact interpreters
have no underflow (mpf and Arb exponents are unbounded), so the recursion here is Graves et al.'s
in probabilities: sums and products of softmax probabilities, with exact zeros for unreachable
states (no -inf, no 0/0 in the gradient), and the loss -log of the total, +inf for labels that
cannot fit the frames. Same signature and conventions as optax (`logits` [B, T, K], paddings 1.0 on
padded frames and labels, labels right-padded); `log_epsilon` is accepted and ignored: it stands for
log 0, which is what this definition uses. Traced by JAX like any reference; never run in floats.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def ctc_loss(logits, logit_paddings, labels, label_paddings, *, blank_id: int = 0, log_epsilon=None):
    """-log P(labels | logits) per sequence, [B]: P sums, over every alignment that collapses (merge
    repeats, drop blanks) to the labels, the product of each frame's softmax probability of its symbol."""
    del log_epsilon  # log 0 is 0 probability here
    batch, _, classes = logits.shape
    n = labels.shape[1]
    probs = jax.nn.softmax(logits, axis=-1)
    blanks = jnp.full((batch, n), blank_id, labels.dtype)
    extended = jnp.concatenate([jnp.stack([blanks, labels], axis=-1).reshape(batch, 2 * n), blanks[:, :1]], axis=1)
    states = 2 * n + 1
    one_hot = (extended[:, :, None] == jnp.arange(classes)[None, None, :]).astype(probs.dtype)  # [B, S, K]
    emit = jnp.einsum("btk,bsk->tbs", probs, one_hot)  # [T, B, S]: each frame's probability of each state's symbol
    # a state may be entered from two back when it is a label that differs from the label two back
    skip = jnp.concatenate([jnp.zeros((batch, 2), bool), (extended[:, 2:] != extended[:, :-2])
                            & (extended[:, 2:] != blank_id)], axis=1)
    padded = jnp.transpose(logit_paddings) != 0  # [T, B]

    def step(alpha, frame):
        p, pad = frame
        zeros = jnp.zeros((batch, 1), alpha.dtype)
        one_back = jnp.concatenate([zeros, alpha[:, :-1]], axis=1)
        two_back = jnp.concatenate([zeros, zeros, alpha[:, :-2]], axis=1)
        entered = (alpha + one_back + jnp.where(skip, two_back, 0)) * p
        return jnp.where(pad[:, None], alpha, entered), None

    start = (jnp.arange(states) == 0).astype(probs.dtype)[None, :] * jnp.ones((batch, 1), probs.dtype)
    alpha, _ = jax.lax.scan(step, start, (emit, padded))
    last = 2 * (n - jnp.sum(label_paddings, axis=1).astype(jnp.int32))  # the final blank's state, per sequence
    ends = (jnp.arange(states)[None, :] == last[:, None]) | (jnp.arange(states)[None, :] == last[:, None] - 1)
    return -jnp.log(jnp.sum(jnp.where(ends, alpha, 0), axis=1))


# library paths whose reference is a definition here rather than the library's code (program.EXACT_OPS)
EXACT_NATIVES = {"optax.ctc_loss": ctc_loss, "optax.losses.ctc_loss": ctc_loss}
