"""QuantState: serialized round trips, ``to``, ``__eq__``, and malformed dicts rejected with
QuantStateError (a ValueError) without unpickling or evaluating anything."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

import bnb_quant as F
from bnb_quant import QuantState, QuantStateError
from bnb_quant.quant_state import pack_dict_to_tensor, unpack_tensor_to_dict


def _state(quant_type: str = "nf4", nested: bool = False, dtype: torch.dtype = torch.bfloat16) -> QuantState:
    A = torch.randn(40, 64, generator=torch.Generator().manual_seed(0)).to(dtype)
    return F.quantize_4bit(A, blocksize=64, quant_type=quant_type, compress_statistics=nested)[1]


def _json(d: dict[str, torch.Tensor]) -> tuple[str, dict]:
    key = next(k for k in d if k.startswith("quant_state."))
    return key, unpack_tensor_to_dict(d[key])


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_packed_round_trip(quant_type: str, nested: bool) -> None:
    state = _state(quant_type, nested)
    packed = state.as_dict(packed=True)
    expected_keys = {"absmax", "quant_map", f"quant_state.bitsandbytes__{quant_type}"}
    if nested:
        expected_keys |= {"nested_absmax", "nested_quant_map"}
    assert set(packed) == expected_keys
    assert all(isinstance(v, torch.Tensor) for v in packed.values())
    _key, plain = _json(packed)
    assert list(plain)[:4] == ["quant_type", "blocksize", "dtype", "shape"]
    assert plain["shape"] == [40, 64] and plain["dtype"] == "bfloat16"
    if nested:
        assert plain["nested_blocksize"] == 256 and plain["nested_dtype"] == "float32"
    loaded = QuantState.from_dict(packed, device="cpu")
    assert loaded == state
    # A module prefix on the keys, as in a state_dict, is accepted.
    assert QuantState.from_dict({f"layer.weight.{k}": v for k, v in packed.items()}, device="cpu") == state


def test_unpacked_dict_and_list_access() -> None:
    state = _state(nested=True)
    plain = state.as_dict()
    assert plain["quant_type"] == "nf4" and plain["shape"] == (40, 64) and plain["nested_blocksize"] == 256
    assert state[0] is state.absmax and state[2] == torch.bfloat16 and state[5] == "nf4"


def test_to_moves_every_tensor() -> None:
    state = _state(nested=True)
    moved = state.to("meta")
    assert moved is state
    tensors = [state.absmax, state.code, state.offset, state.state2.absmax, state.state2.code]
    assert all(t.device.type == "meta" for t in tensors)


def test_equality() -> None:
    a, b = _state(), _state()
    assert a == b and a != "state"
    b.blocksize = 128
    assert a != b
    c = _state()
    c.absmax = c.absmax + 1
    assert a != c
    assert _state("nf4") != _state("fp4")
    assert _state(nested=True) != _state(nested=False)


def test_pack_helpers() -> None:
    t = pack_dict_to_tensor({"a": 1, "b": [2, 3]})
    assert t.dtype == torch.uint8 and t.dim() == 1
    assert unpack_tensor_to_dict(t) == {"a": 1, "b": [2, 3]}


# --------------------------------------------------------------------------------------
# Malformed dicts
# --------------------------------------------------------------------------------------


def _packed(nested: bool = False) -> dict[str, torch.Tensor]:
    return _state(nested=nested).as_dict(packed=True)


def _with_json(d: dict[str, torch.Tensor], **changes: object) -> dict[str, torch.Tensor]:
    key, plain = _json(d)
    for k, v in changes.items():
        if v is None:
            plain.pop(k)
        else:
            plain[k] = v
    return {**d, key: pack_dict_to_tensor(plain)}


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: {k: v for k, v in _packed().items() if k != "absmax"}, "missing"),
        (lambda: {k: v for k, v in _packed().items() if k != "quant_map"}, "missing"),
        (lambda: _with_json(_packed(), shape=None), "missing"),
        (lambda: _with_json(_packed(), quant_type="int4"), "quant_type"),
        (lambda: _with_json(_packed(), blocksize=-64), "blocksize"),
        (lambda: _with_json(_packed(), blocksize="64"), "blocksize"),
        (lambda: _with_json(_packed(), shape=[40, "64"]), "shape"),
        (lambda: _with_json(_packed(), shape=[41, 64]), "absmax must have shape"),
        (lambda: _with_json(_packed(), dtype="complex64"), "dtype"),
        (lambda: _with_json(_packed(), surprise=1), "unexpected"),
        (lambda: {**_packed(), "absmax": _packed()["absmax"].half()}, "dtype"),
        (lambda: {**_packed(), "absmax": [1.0, 2.0]}, "must be a tensor"),
        (lambda: {**_packed(), "quant_map": torch.zeros(8)}, "quant_map must have shape"),
        (lambda: _with_json(_packed(nested=True), nested_offset=None), "nested_offset"),
        (lambda: _with_json(_packed(nested=True), nested_offset="0.5"), "nested_offset"),
        (lambda: {k: v for k, v in _packed(nested=True).items() if k != "nested_quant_map"}, "nested_quant_map"),
        (lambda: {**_packed(nested=True), "nested_absmax": torch.zeros(7)}, "nested_absmax must have shape"),
        (lambda: "not a dict", "must be a dict"),
    ],
)
def test_malformed_dicts_raise(make, match: str) -> None:
    with pytest.raises(QuantStateError, match=match):
        QuantState.from_dict(make(), device="cpu")


def test_bad_json_and_unknown_packed_key() -> None:
    d = _packed()
    key, _ = _json(d)
    assert issubclass(QuantStateError, ValueError)
    for payload in (b"{not json", b"\xff\xfe", b"[1, 2]", b'"text"'):
        with pytest.raises(QuantStateError, match="JSON"):
            QuantState.from_dict({**d, key: torch.frombuffer(bytearray(payload), dtype=torch.uint8)}, device="cpu")
    renamed = {("quant_state.bitsandbytes__int4" if k == key else k): v for k, v in d.items()}
    with pytest.raises(QuantStateError, match="bitsandbytes__"):
        QuantState.from_dict(renamed, device="cpu")
    two = {**d, "other.quant_state.bitsandbytes__fp4": d[key]}
    with pytest.raises(QuantStateError, match="one packed"):
        QuantState.from_dict(two, device="cpu")
    with pytest.raises(QuantStateError, match="uint8"):
        QuantState.from_dict({**d, key: d[key].to(torch.int32)}, device="cpu")


class _Boom:
    def __reduce__(self):
        return (pytest.fail, ("unpickled",))


def test_pickle_bytes_are_never_unpickled() -> None:
    d = _packed()
    key, _ = _json(d)
    evil = torch.frombuffer(bytearray(pickle.dumps(_Boom())), dtype=torch.uint8)
    with pytest.raises(QuantStateError):
        QuantState.from_dict({**d, key: evil}, device="cpu")
    # Strings inside the JSON are data, never evaluated.
    with pytest.raises(QuantStateError, match="dtype"):
        QuantState.from_dict(_with_json(d, dtype="__import__('os').system('false')"), device="cpu")
    assert json.loads(bytes(d[key].tolist()))["quant_type"] == "nf4"
