"""Integer inputs (`{int32: ...}`: labels, lengths) and the CTC loss, against independent truth.

Truth for CTC: the definition itself, enumerated: the loss is -log of the sum, over every alignment
pi in {0..K-1}^T that collapses (merge repeats, then drop blanks) to the labels, of prod_t softmax(x_t)[pi_t],
in mpmath at 256 bits; its gradient is checked against mpmath.diff of that sum (a central difference at
256 bits), so neither the loss nor its gradient comes from the code under test.
"""

from __future__ import annotations

import itertools

import mpmath
import numpy as np
import pytest
from mpmath import mp

from oracle import reference
from oracle.case import CaseError, loads
from oracle.floats import fmt
from oracle.frameworks import jax as jax_backend
from oracle.frameworks import native_ops
from oracle.reference.program import trace

F32 = fmt("float32")
TRUTH_BITS = 256
OPTAX = "optax.ctc_loss(jax.numpy.transpose(x, (1, 0, 2)), logit_paddings, labels, label_paddings)"


def ctc_case(logits: list, labels: list[int], extra: str = "", wrt: str = "wrt: [x]") -> str:
    """A one-sequence CTC case: logits [T][K] (time-major, batch 1), the reference optax.ctc_loss."""
    x = [[row] for row in logits]
    extra = extra or f"impl: {{jax: '{OPTAX}'}}\n"
    return f"""\
id: ctc-tiny
title: tiny CTC
kind: loss
inputs:
  x: {x}
  labels: {{int32: [{labels}]}}
  logit_paddings: [{[0] * len(logits)}]
  label_paddings: [{[0] * len(labels)}]
{wrt}
{extra}reference: {OPTAX}
"""


def collapse(path: tuple[int, ...], blank: int = 0) -> list[int]:
    merged = [p for k, p in enumerate(path) if k == 0 or p != path[k - 1]]
    return [p for p in merged if p != blank]


def ctc_probability(logits, labels: list[int]):
    """Sum over alignments of the product of per-frame softmax probabilities (mpmath, current precision)."""
    rows = [[mpmath.mpf(v) for v in row] for row in logits]
    probs = []
    for row in rows:
        total = mpmath.fsum(mpmath.exp(v) for v in row)
        probs.append([mpmath.exp(v) / total for v in row])
    k = len(rows[0])
    return mpmath.fsum(mpmath.fprod(probs[t][p] for t, p in enumerate(path))
                       for path in itertools.product(range(k), repeat=len(rows)) if collapse(path) == labels)


def ctc_truth(logits, labels: list[int]):
    """(loss, gradient [T][K]) of the enumerated definition at TRUTH_BITS."""
    with mp.workprec(TRUTH_BITS):
        flat = [mpmath.mpf(float(v)) for row in logits for v in row]
        shape = (len(logits), len(logits[0]))

        def loss(*values):
            return -mpmath.log(ctc_probability(np.reshape(np.array(values, dtype=object), shape).tolist(), labels))

        value = loss(*flat)
        gradient = [mpmath.diff(lambda v, j=j: loss(*flat[:j], v, *flat[j + 1:]), flat[j]) for j in range(len(flat))]
        return value, np.reshape(np.array(gradient, dtype=object), shape)


def certified(text: str):
    case = loads(text, "ctc.yaml")
    inputs = case.rounded(F32)
    program = trace(case.reference, {n: v.shape for n, v in inputs.items()}, case.wrt, integers=case.integers)
    return case, inputs, reference.compute(program, inputs, F32)


TINY = [  # (logits [T][K], labels): T = 2..3, K = 2..3, blank 0
    ([[0.5, -1.0, 2.0], [0.25, 1.5, -0.5], [1.0, 0.0, 0.75]], [1, 2]),
    ([[0.5, -1.0, 2.0], [0.25, 1.5, -0.5], [1.0, 0.0, 0.75]], [1, 1]),  # a repeat needs a blank between
    ([[0.5, -1.0, 2.0], [0.25, 1.5, -0.5], [1.0, 0.0, 0.75]], [2]),
    ([[1.5, -0.25], [-2.0, 0.75]], [1]),
]


@pytest.mark.parametrize("logits, labels", TINY)
def test_ctc_reference_is_the_enumerated_definition(logits, labels):
    case, inputs, ref = certified(ctc_case(logits, labels))
    assert inputs["labels"].dtype == np.int32 and case.integers == {"labels": "int32"}
    value, gradient = ctc_truth(inputs["x"][:, 0, :].tolist(), labels)
    out = {o.name: o for o in ref.outputs}
    assert ref.engine == "arb" and out["value"].certified.all() and out["grad.x"].certified.all()
    assert out["value"].rounded[0] == np.float32(float(value))  # correctly rounded, certified
    np.testing.assert_array_equal(out["grad.x"].rounded[:, 0, :],
                                  np.vectorize(lambda v: np.float32(float(v)))(gradient).astype(np.float32))
    with mp.workprec(TRUTH_BITS):  # the exact values too, far below a float's last bit
        assert abs(out["value"].exact[0] - value) <= abs(value) * mpmath.mpf(2) ** -60


def test_infeasible_labels_reference_is_inf_and_optax_log_epsilon_shows():
    """Labels [1, 1] cannot fit 2 frames (a repeat needs a blank between): the CTC probability is 0, the loss
    +inf, which the reference certifies. optax's own code writes log 0 as log_epsilon = -1e5: evaluated exactly
    (as the runner replays JAX's program), it is finite, about 1e5: the library constant, not the mathematics."""
    logits = [[1.5, -0.25], [-2.0, 0.75]]
    with mp.workprec(TRUTH_BITS):
        assert ctc_probability(logits, [1, 1]) == 0
    case, inputs, ref = certified(ctc_case(logits, [1, 1]))
    assert ref.outputs[0].certified.all() and ref.outputs[0].exact[0] == mpmath.inf
    own = trace(case.reference, {n: v.shape for n, v in inputs.items()}, case.wrt, integers=case.integers,
                ops={**jax_backend.OPS, **native_ops("jax")})
    value = reference.compute(own, inputs, F32, diff_limit=0).outputs[0].exact[0]
    assert abs(value - 100000) < 10


def test_integer_inputs_reach_frameworks_as_integers():
    """Each framework's CTC gets integer labels and lengths and comes within float32's accuracy of the enumerated
    loss (TensorFlow's dense ctc_loss multiplies by a float32 tensor inside, so it refuses float64 logits)."""
    from oracle.runner import run_case

    logits, labels = TINY[1]
    text = ctc_case(logits, labels, extra=(
        "impl:\n"
        "  torch: torch.nn.functional.ctc_loss(torch.nn.functional.log_softmax(x, dim=-1), labels, n_frames, "
        "n_labels, reduction=\"none\")\n"
        "  tf: tf.nn.ctc_loss(labels, x, n_labels, n_frames, logits_time_major=True, blank_index=0)\n"
        f"  jax: {OPTAX}\n"
        "dtypes: [float32]\n"))
    text = text.replace("  label_paddings:", "  n_frames: {int32: [3]}\n  n_labels: {int64: [2]}\n  label_paddings:")
    case = loads(text, "ctc.yaml")
    assert case.integers == {"labels": "int32", "n_frames": "int32", "n_labels": "int64"}
    assert case.wrt == ["x"] and set(case.integers) <= set(case.data_inputs)
    result = run_case(case)
    value, _ = ctc_truth(logits, labels)
    rows = {(r["framework"], r["output"]): r for r in result["results"]}
    assert {fw for fw, _ in rows} == {"tf", "torch", "jax"}
    for fw in ("tf", "torch", "jax"):
        assert abs(float(rows[fw, "value"]["got"]) - float(value)) < 4e-6 * float(value), rows[fw, "value"]
    condition = result["reference"]["float32"]["condition"]
    assert "8 input directions, not over the data inputs labels, logit_paddings, n_frames, n_labels, label_paddings" in condition


@pytest.mark.parametrize("change, field, message", [
    ("wrt: [x, labels]", "wrt.1", "'labels' is an int32 input: integers are never differentiated"),
    ("labels: {int32: [[1, 2.5]]}", "inputs.labels.int32", "2.5 is not an integer"),
    ("labels: {int32: [[1, 3000000000]]}", "inputs.labels.int32", "outside int32's range"),
    ("labels: {int32: {sweep: {linspace: [0, 3, 4]}}}", "inputs.labels.int32", "integer inputs cannot sweep"),
    ("labels: {int16: [[1, 2]]}", "inputs.labels", "exactly one of"),
])
def test_integer_input_refusals_name_file_field_and_line(change, field, message):
    logits, labels = TINY[0]
    text = ctc_case(logits, labels)
    if change.startswith("wrt"):
        text = text.replace("wrt: [x]", change)
    else:
        text = text.replace("  labels: {int32: [[1, 2]]}", "  " + change)
    with pytest.raises(CaseError) as error:
        loads(text, "bad.yaml")
    line = next(k for k, row in enumerate(text.splitlines(), 1) if row.strip().startswith(change.split(":")[0]))
    assert error.value.field == field and error.value.line == line and message in error.value.message, error.value


def test_integer_inputs_default_out_of_wrt_and_plain_references_unchanged():
    text = ctc_case(*TINY[0], wrt="")
    case = loads(text, "ctc.yaml")
    assert case.wrt == ["x", "logit_paddings", "label_paddings"]  # every input but the integers
    plain = loads("id: a\ntitle: t\nkind: loss\ninputs: {x: 1.0, n: 3}\nformula: n * x\n", "a.yaml")
    assert plain.integers == {} and plain.wrt == ["x", "n"]
    assert plain.rounded(F32)["n"].dtype == np.float32  # an integer-valued float input stays a float


def test_padded_batch_against_enumeration_per_sequence():
    """Two sequences: the second has its last frame and its second label padded (optax's conventions)."""
    logits = [[[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], [[0.25, 1.5, -0.5], [0.0, 2.0, 1.0]],
              [[1.0, 0.0, 0.75], [9.0, -9.0, 9.0]]]  # [T=3, B=2, K=3]; the padded frame's logits must not matter
    text = f"""\
id: ctc-padded
title: padded CTC batch
kind: loss
inputs:
  x: {logits}
  labels: {{int32: [[1, 2], [2, 7]]}}
  logit_paddings: [[0, 0, 0], [0, 0, 1]]
  label_paddings: [[0, 0], [0, 1]]
wrt: [x]
impl: {{jax: '{OPTAX}'}}
reference: {OPTAX}
"""
    case, inputs, ref = certified(text)
    x = inputs["x"]
    first, _ = ctc_truth(x[:, 0, :].tolist(), [1, 2])
    second, grad_second = ctc_truth(x[:2, 1, :].tolist(), [2])
    value, grad = ref.outputs
    np.testing.assert_array_equal(value.rounded, np.array([float(first), float(second)], np.float32))
    assert value.certified.all() and grad.certified.all()
    np.testing.assert_array_equal(grad.rounded[:2, 1, :], np.vectorize(lambda v: np.float32(float(v)))(grad_second))
    assert (grad.rounded[2, 1, :] == 0).all()  # the padded frame does not enter the loss


def test_integer_labels_in_a_sweep_reach_every_framework():
    """Sparse cross-entropy with integer labels, the logits scaled by a swept z: every framework vmaps the case
    with the labels as integer tensors (torch's cross_entropy wants int64), and the certified reference at each
    point is log(sum(exp(z l))) - z l[label] computed in mpmath directly."""
    from oracle.runner import run_case

    text = """\
id: sparse-ce-sweep
title: sparse cross-entropy, swept temperature
kind: loss
inputs:
  logits: [[1.0, 2.5, -0.5], [0.25, 0.0, 3.0]]
  z: {sweep: {linspace: [-4, 4, 5]}}
  labels: {int32: [2, 0]}
  labels64: {int64: [2, 0]}
wrt: [z]
impl:
  tf: tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits * z)
  torch: torch.nn.functional.cross_entropy(logits * z, labels64, reduction="none")
  jax: optax.softmax_cross_entropy_with_integer_labels(logits * z, labels)
reference: optax.softmax_cross_entropy_with_integer_labels(logits * z, labels)
"""
    case = loads(text, "ce.yaml")
    assert case.wrt == ["z"] and case.integers == {"labels": "int32", "labels64": "int64"}
    inputs = case.rounded(F32)
    assert inputs["labels"].shape == (5, 2) and inputs["labels64"].dtype == np.int64  # a leading axis of points
    program = trace(case.reference, {n: v.shape for n, v in inputs.items()}, case.wrt, batched=True,
                    integers=case.integers)
    value, grad = reference.compute(program, inputs, F32).outputs
    logits = [[1.0, 2.5, -0.5], [0.25, 0.0, 3.0]]
    for p, z in enumerate([-4, -2, 0, 2, 4]):
        with mp.workprec(TRUTH_BITS):
            losses, slopes = [], []
            for row, label in zip(logits, [2, 0]):
                scaled = [mpmath.mpf(v) * z for v in row]
                total = mpmath.fsum(mpmath.exp(v) for v in scaled)
                losses.append(mpmath.log(total) - scaled[label])
                slopes.append(mpmath.fsum(mpmath.exp(v) * w for v, w in zip(scaled, row)) / total - row[label])
        np.testing.assert_array_equal(value.rounded[p], np.array([float(v) for v in losses], np.float32))
        assert grad.rounded[p] == np.float32(float(mpmath.fsum(slopes)))  # d/dz of the sum over the batch
    result = run_case(case)
    assert {r["framework"] for r in result["results"]} == {"tf", "torch", "jax"}
    assert not [r for r in result["results"] if r["verdict"] == "error"], result["results"]


def test_hunt_screen_keeps_integer_inputs_integers():
    """oracle hunt's screen evaluates a searched input beside fixed integer labels: the labels stay int32 (the
    float64 approximation it ranks candidates by included), so no candidate is an error."""
    from oracle.screen import Screen, fixed_inputs

    case = loads("""\
id: ce-search
title: sparse cross-entropy, searched temperature
kind: loss
inputs:
  logits: [1.0, 2.5, -0.5]
  z: {search: {low: -50, high: 50}}
  labels: {int32: 2}
wrt: [z]
impl: {jax: 'optax.softmax_cross_entropy_with_integer_labels(logits * z, labels)'}
reference: optax.softmax_cross_entropy_with_integer_labels(logits * z, labels)
""", "ce.yaml")
    fixed = fixed_inputs(case, F32, ["z"])
    assert fixed["labels"].dtype == np.int32 and fixed["logits"].dtype == np.float32
    z = np.array([-50.0, -1.0, 0.0, 3.0, 50.0], np.float32)
    screened = Screen(case, F32, ["jax"], ["z"], fixed)({"z": z})
    bits, classes = screened[("jax", "optax.softmax_cross_entropy_with_integer_labels", "float32", "value")]
    assert not any("error" in str(c) for c in classes) and (bits <= 2).all(), (bits, classes)


def test_the_case_schema_describes_integer_inputs():
    from oracle.case import json_schema

    entries = json_schema()["properties"]["inputs"]["additionalProperties"]["anyOf"]
    assert [e["required"] for e in entries if "int" in str(e.get("required"))] == [["int32"], ["int64"]]
