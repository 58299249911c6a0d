"""Base classes of the 8-bit/32-bit optimizers and the global per-parameter config manager.

Every parameter with a gradient is updated by one fused kernel call
(``torch.ops.bitsandbytes.optimizer_update_32bit`` or ``..._8bit_blockwise``); a step issues
no host synchronization unless ``percentile_clipping < 100`` or ``max_unorm > 0`` (those read a
norm back, as in the reference release).

State layout per parameter (the reference release's): ``step`` (int), ``state1``/``state2``
(float32, or uint8 codes with ``qmap1``/``qmap2`` and one float32 ``absmax1``/``absmax2`` per
block of 256), optional ``gnorm_vec``/``unorm_vec``. ``state_dict()`` nests the tensors under
``__bnb_optimizer_quant_state__`` so FSDP does not try to shard them.
"""

from __future__ import annotations

import math
import weakref
from collections import defaultdict
from collections.abc import Iterable
from itertools import chain
from typing import Any

import torch

from bnb_kernels import implementations, selected_backend
from bnb_kernels.backends.reference.optim import DECOUPLED, dynamic_map, hyper, update_direction
from bnb_kernels.ops.optim import OPTIM_BLOCKSIZE, OPTIMIZERS, TWO_STATE, optim_num_blocks

from . import paged

__all__ = ["GlobalOptimManager", "MockArgs", "Optimizer1State", "Optimizer2State", "Optimizer8bit"]

QUANT_STATE_KEY = "__bnb_optimizer_quant_state__"
# Tensors that keep their dtype when loaded and travel nested in state_dict().
NON_CASTABLE_KEYS = (
    "qmap1",
    "qmap2",
    "max1",
    "max2",
    "new_max1",
    "new_max2",
    "state1",
    "state2",
    "gnorm_vec",
    "absmax1",
    "absmax2",
    "unorm_vec",
)
OVERRIDE_ATTR = "bnb_optim_overrides"


class MockArgs:
    """Attribute bag holding the 8-bit options (``optim_bits``, ``min_8bit_size``, ...)."""

    def __init__(self, initial_data: dict[str, Any]) -> None:
        for key, value in initial_data.items():
            setattr(self, key, value)


class GlobalOptimManager:
    """Process-wide per-parameter config overrides (e.g. 32-bit state for one embedding).

    ``override_config(param, "optim_bits", 32)`` or ``register_module_override(module,
    "weight", {...})`` before the first ``step()``. Parameters may also carry their own
    overrides in the attribute ``bnb_optim_overrides`` (a dict), which bnb-nn modules set.
    """

    _instance: GlobalOptimManager | None = None

    def __init__(self) -> None:
        raise RuntimeError("Call get_instance() instead")

    def initialize(self) -> None:
        self.pid2config: dict[int, dict[str, Any]] = {}
        self.index2config: dict[tuple[int, int], dict[str, Any]] = {}
        self.optimizer = None
        self.uses_config_override = False
        self.module_weight_config_triple: list[tuple[torch.nn.Module, str, dict[str, Any]]] = []
        # id() of a dead tensor can be reused: remember which tensor each id belonged to
        self._pid_refs: dict[int, weakref.ref] = {}

    def config_for(self, p: torch.Tensor) -> dict[str, Any] | None:
        """The override registered for this very tensor, if any."""
        ref = self._pid_refs.get(id(p))
        if ref is not None and ref() is p:
            return self.pid2config.get(id(p))
        return None

    @classmethod
    def get_instance(cls) -> GlobalOptimManager:
        if cls._instance is None:
            cls._instance = cls.__new__(cls)
            cls._instance.initialize()
        return cls._instance

    def register_parameters(self, params: Iterable[Any]) -> None:
        param_groups = list(params)
        if not param_groups:
            return
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for group_index, group in enumerate(param_groups):
            for p_index, p in enumerate(group["params"]):
                config = self.config_for(p)
                if config is not None:
                    self.index2config[(group_index, p_index)] = config

    def override_config(
        self,
        parameters: torch.Tensor | Iterable[torch.Tensor],
        key: str | None = None,
        value: Any = None,
        key_value_dict: dict[str, Any] | None = None,
    ) -> None:
        """Override optimizer options (``optim_bits``, ``lr``, ``betas``, ...) for ``parameters``."""
        self.uses_config_override = True
        if isinstance(parameters, torch.Tensor):
            parameters = [parameters]
        if key is not None and value is not None:
            if key_value_dict is not None:
                raise ValueError("pass either key/value or key_value_dict, not both")
            key_value_dict = {key: value}
        if key_value_dict is None:
            raise ValueError("override_config needs key and value, or key_value_dict")
        if not isinstance(key_value_dict, dict):
            raise TypeError(f"key_value_dict must be a dict, got {type(key_value_dict).__name__}")
        for p in parameters:
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"parameters must be tensors, got {type(p).__name__}")
            if self.config_for(p) is None:
                self.pid2config[id(p)] = {}
                self._pid_refs[id(p)] = weakref.ref(p)
            self.pid2config[id(p)].update(key_value_dict)

    def register_module_override(self, module: torch.nn.Module, param_name: str, config: dict[str, Any]) -> None:
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        self.module_weight_config_triple.append((module, param_name, config))


def _check_hyper(lr: float, eps: float, betas: Any, weight_decay: float) -> tuple[float, ...]:
    if isinstance(betas, str):  # "(0.9, 0.999)" as some launchers pass it
        betas = [float(b) for b in betas.replace("(", "").replace(")", "").strip().split(",")]
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0.0:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0.0:
        raise ValueError(f"Invalid epsilon value: {eps}")
    try:
        betas = tuple(float(b) for b in betas)
    except TypeError:
        raise ValueError(f"betas must be a tuple of floats, got {betas!r}") from None
    for i, b in enumerate(betas):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {b}")
    if not isinstance(weight_decay, (int, float)) or not math.isfinite(weight_decay) or weight_decay < 0.0:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
    return betas


def _copy_tree(value: Any) -> Any:
    """Deep copy of nested dicts/lists/tuples; tensors are cloned without their Python
    attributes (a paged tensor's handle to its managed memory is not copyable)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _copy_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_tree(v) for v in value]
    if isinstance(value, tuple) and type(value) is tuple:
        return tuple(_copy_tree(v) for v in value)
    return value


class Optimizer8bit(torch.optim.Optimizer):
    """Common machinery: per-parameter config, state allocation (paged or not), fused step,
    state_dict in the reference layout."""

    def __init__(self, params: Any, defaults: dict[str, Any], optim_bits: int = 32, is_paged: bool = False) -> None:
        super().__init__(params, defaults)
        self.initialized = False
        self.name2qmap: dict[str, torch.Tensor] = {}
        self.is_paged = is_paged
        self.mng = GlobalOptimManager.get_instance()
        self.non_castable_tensor_keys = set(NON_CASTABLE_KEYS)
        self._param_meta: dict[int, tuple[torch.dtype, torch.device]] = {}
        if optim_bits == 8:
            self.fill_qmap()

    def fill_qmap(self) -> None:
        self.name2qmap["dynamic"] = dynamic_map(signed=True)
        self.name2qmap["udynamic"] = dynamic_map(signed=False)

    def _qmap(self, name: str, device: torch.device) -> torch.Tensor:
        """One codebook tensor per device, shared by every parameter there."""
        if "dynamic" not in self.name2qmap:
            self.fill_qmap()
        key = f"{name}@{device}"
        q = self.name2qmap.get(key)
        if q is None:
            q = self.name2qmap[name].to(device)
            self.name2qmap[key] = q
        return q

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_param_meta", {})

    # ----------------------------------------------------------------- state dict
    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        packed = {}
        for k, v in sd["state"].items():
            if isinstance(v, dict):
                # paged tensors go out as plain views (their memory handle is not picklable)
                v = {kk: (vv.view(vv.shape) if paged.is_paged(vv) else vv) for kk, vv in v.items()}
                inner = {kk: vv for kk, vv in v.items() if kk in self.non_castable_tensor_keys}
                outer = {kk: vv for kk, vv in v.items() if kk not in self.non_castable_tensor_keys}
                if inner:
                    outer[QUANT_STATE_KEY] = inner
                packed[k] = outer
            else:
                packed[k] = v
        return {"state": packed, "param_groups": sd["param_groups"]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict written by this class or by the reference release."""
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("state_dict must be a dict with 'state' and 'param_groups'")
        state_dict = _copy_tree(state_dict)
        groups = self.param_groups
        saved_groups = state_dict["param_groups"]
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups)):
            raise ValueError(
                "loaded state dict contains a parameter group that doesn't match the size of optimizer's group"
            )
        id_map = dict(
            zip(
                chain.from_iterable(g["params"] for g in saved_groups), chain.from_iterable(g["params"] for g in groups)
            )
        )

        def restore(param: torch.Tensor, value: dict[str, Any]) -> dict[str, Any]:
            value = dict(value)
            nested = value.pop(QUANT_STATE_KEY, None)
            if nested is not None:
                value.update(nested)
            out: dict[str, Any] = {}
            for k, v in value.items():
                if isinstance(v, torch.Tensor):
                    if k in ("qmap1", "qmap2"):
                        # share one codebook tensor per device (kernels cache tables per tensor)
                        shared = self._qmap("dynamic" if k == "qmap1" else "udynamic", param.device)
                        v = shared if torch.equal(v.to(shared.device), shared) else v.to(param.device)
                    elif k in self.non_castable_tensor_keys:
                        v = v.to(param.device)
                        if self.is_paged and k in ("state1", "state2") and v.numel() >= paged.PAGED_MIN_NUMEL:
                            buf = paged.managed_empty(tuple(v.shape), v.dtype, param.device)
                            buf.copy_(v)
                            v = buf
                    elif param.is_floating_point() and v.is_floating_point():
                        v = v.to(device=param.device, dtype=param.dtype)
                    else:
                        v = v.to(param.device)
                elif k == "step" and isinstance(v, torch.Tensor):
                    v = int(v.item())
                out[k] = v
            return out

        state: dict[Any, Any] = defaultdict(dict)
        for k, v in state_dict["state"].items():
            if k in id_map:
                state[id_map[k]] = restore(id_map[k], v) if isinstance(v, dict) else v
            else:
                state[k] = v

        def update_group(group: dict[str, Any], new_group: dict[str, Any]) -> dict[str, Any]:
            new_group["params"] = group["params"]
            for key, value in group.items():  # keys this class knows but an old checkpoint lacks
                new_group.setdefault(key, value)
            return new_group

        param_groups = [update_group(g, ng) for g, ng in zip(groups, saved_groups)]
        self.__setstate__({"state": state, "param_groups": param_groups})
        self._param_meta = {}
        for p, st in self.state.items():
            if isinstance(p, torch.Tensor) and st:
                self._param_meta[id(p)] = (p.dtype, p.device)

    # ----------------------------------------------------------------- config
    def check_overrides(self) -> None:
        for module, attr, config in self.mng.module_weight_config_triple:
            pmodule = getattr(module, attr, None)
            if not isinstance(pmodule, torch.Tensor):
                raise ValueError(f"register_module_override: {type(module).__name__}.{attr} is not a tensor")
            for gindex, group in enumerate(self.param_groups):
                for pindex, p in enumerate(group["params"]):
                    if p is pmodule:
                        self.mng.pid2config[id(p)] = config
                        self.mng._pid_refs[id(p)] = weakref.ref(p)
                        self.mng.index2config[(gindex, pindex)] = config

    def get_config(self, gindex: int, pindex: int, group: dict[str, Any]) -> dict[str, Any]:
        config = {
            "betas": group["betas"],
            "eps": group["eps"],
            "weight_decay": group["weight_decay"],
            "lr": group["lr"],
            "alpha": group.get("alpha", 0.0),
            "t_alpha": group.get("t_alpha"),
            "t_beta3": group.get("t_beta3"),
            "optim_bits": self.args.optim_bits,
            "min_8bit_size": self.args.min_8bit_size,
            "percentile_clipping": self.args.percentile_clipping,
            "block_wise": self.args.block_wise,
            "max_unorm": self.args.max_unorm,
            "skip_zeros": self.args.skip_zeros,
        }
        p = group["params"][pindex]
        override = self.mng.config_for(p)
        if override is not None:
            config.update(override)
        tag = getattr(p, OVERRIDE_ATTR, None)
        if tag:
            if not isinstance(tag, dict):
                raise TypeError(f"parameter attribute {OVERRIDE_ATTR} must be a dict, got {type(tag).__name__}")
            config.update(tag)
        return config

    # ----------------------------------------------------------------- buffers
    def get_state_buffer(self, p: torch.Tensor, dtype: torch.dtype = torch.float32, shape=None) -> torch.Tensor:
        shape = tuple(p.shape) if shape is None else tuple(shape)
        numel = math.prod(shape)
        if not self.is_paged or numel < paged.PAGED_MIN_NUMEL:
            return torch.zeros(shape, dtype=dtype, device=p.device)
        buf = paged.managed_empty(shape, dtype, p.device)
        if paged.is_paged(buf):
            from .functional import GlobalPageManager

            GlobalPageManager.get_instance().paged_tensors.append(buf)
        return buf

    def prefetch_state(self, p: torch.Tensor) -> None:
        if self.is_paged:
            state = self.state[p]
            for key in ("state1", "state2"):
                t = state.get(key)
                if t is not None and paged.is_paged(t):
                    paged.prefetch(t)

    # ----------------------------------------------------------------- step
    def _check_grad(self, p: torch.Tensor) -> torch.Tensor:
        grad = p.grad
        if grad.is_sparse:
            raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
        if grad.dtype != p.dtype:
            raise ValueError(f"gradient dtype {grad.dtype} does not match the parameter dtype {p.dtype}")
        if grad.device != p.device:
            raise ValueError(f"gradient is on {grad.device} but the parameter is on {p.device}")
        if grad.shape != p.shape:
            raise ValueError(f"gradient shape {tuple(grad.shape)} does not match the parameter {tuple(p.shape)}")
        meta = self._param_meta.get(id(p))
        if meta is not None and (grad.dtype, grad.device) != meta:
            raise ValueError(
                f"the gradient of a parameter changed from {meta[0]} on {meta[1]} to {grad.dtype} on "
                f"{grad.device} since its optimizer state was created; build a new optimizer (or load a "
                "state dict) after moving or casting the model"
            )
        return grad

    @torch.no_grad()
    def step(self, closure=None):
        """Perform a single optimization step."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if not self.initialized:
            self.check_overrides()
            self.initialized = True
        for gindex, group in enumerate(self.param_groups):
            for pindex, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                self._check_grad(p)
                state = self.state[p]
                if len(state) == 0:
                    self.init_state(group, p, gindex, pindex)
                    self._param_meta[id(p)] = (p.dtype, p.device)
                self.prefetch_state(p)
                self.update_step(group, p, gindex, pindex)
        return loss

    def init_state(self, group, p, gindex, pindex):
        raise NotImplementedError("init_state method needs to be overridden")

    def update_step(self, group, p, gindex, pindex):
        raise NotImplementedError("The update_step method needs to be overridden")

    # ----------------------------------------------------------------- helpers
    @staticmethod
    def _percentile_scale(grad: torch.Tensor, gnorm_vec: torch.Tensor, step: int, percentile: int) -> float:
        """Track the last 100 squared gradient norms; clip to the given percentile of them."""
        gnorm_vec[step % 100] = grad.float().pow(2).sum()
        current = torch.sqrt(gnorm_vec[step % 100])
        clip = torch.sqrt(torch.sort(gnorm_vec).values[percentile])
        scale = torch.where(current > clip, clip / current, torch.ones_like(current))
        return float(scale.item())

    def _init_common(self, state: dict[str, Any], p: torch.Tensor, config: dict[str, Any]) -> None:
        if config["percentile_clipping"] < 100:
            state["gnorm_vec"] = torch.zeros((100,), device=p.device)
        if config["max_unorm"] > 0.0:
            state["unorm_vec"] = torch.zeros((1,), device=p.device)

    def _state_bits(self, p: torch.Tensor, config: dict[str, Any]) -> torch.dtype:
        bits = config["optim_bits"]
        if bits not in (8, 32):
            raise ValueError(f"optim_bits must be 8 or 32, got {bits!r}")
        if bits == 8 and p.numel() >= config["min_8bit_size"]:
            return torch.uint8
        return torch.float32

    def _alloc(self, name: str, p: torch.Tensor, config: dict[str, Any], two: bool) -> None:
        state = self.state[p]
        state["step"] = 0
        dtype = self._state_bits(p, config)
        k = 2 if name == "ademamix" else 1
        shape1 = (2, *p.shape) if k == 2 else tuple(p.shape)
        state["state1"] = self.get_state_buffer(p, dtype, shape1)
        if two:
            state["state2"] = self.get_state_buffer(p, dtype)
        if dtype == torch.uint8:
            blocks = optim_num_blocks(p.numel())
            state["qmap1"] = self._qmap("dynamic", p.device)
            state["absmax1"] = torch.zeros((2, blocks) if k == 2 else (blocks,), dtype=torch.float32, device=p.device)
            if two:
                state["qmap2"] = self._qmap("udynamic", p.device)
                state["absmax2"] = torch.zeros((blocks,), dtype=torch.float32, device=p.device)
        self._init_common(state, p, config)

    def _op(self, op: str, device: torch.device):
        """The implementation the registry selects for ``op`` on ``device``, called directly:
        going through ``torch.ops`` costs more host time per parameter than the launch itself.
        Under ``torch.compile`` the op goes through the dispatcher as usual."""
        if _compiling():
            return getattr(torch.ops.bitsandbytes, op)
        fns = self.__dict__.setdefault("_op_fns", {})
        key = (op, device)
        fn = fns.get(key)
        if fn is None:
            backend = selected_backend(op, device)
            fn = next((i.fn for i in implementations(op) if i.backend == backend), None)
            fn = fn or getattr(torch.ops.bitsandbytes, op)
            fns[key] = fn
        return fn

    def _update(self, name: str, p: torch.Tensor, config: dict[str, Any], betas: tuple[float, ...], alpha: float):
        state = self.state[p]
        if not p.is_contiguous():
            p.data = p.data.contiguous()
        grad = p.grad if p.grad.is_contiguous() else p.grad.contiguous()
        state["step"] += 1
        step = state["step"]
        gnorm_scale = 1.0
        if config["percentile_clipping"] < 100:
            gnorm_scale = self._percentile_scale(grad, state["gnorm_vec"], step, int(config["percentile_clipping"]))
        b1 = betas[0]
        b2 = betas[1] if len(betas) > 1 else 0.0
        b3 = betas[2] if len(betas) > 2 else 0.0
        lr, wd, eps = float(config["lr"]), float(config["weight_decay"]), float(config["eps"])
        max_unorm = float(config["max_unorm"] or 0.0)
        skip_zeros = bool(config["skip_zeros"])
        s1, s2 = state["state1"], state.get("state2")
        if s1.dtype == torch.float32:
            param_norm = float(p.detach().float().norm().item()) if max_unorm > 0.0 else 0.0
            self._op("optimizer_update_32bit", p.device)(
                name, grad, p, s1, s2, state.get("unorm_vec"), max_unorm, param_norm,
                b1, b2, b3, alpha, eps, wd, step, lr, gnorm_scale, skip_zeros,
            )  # fmt: skip
            return
        if max_unorm > 0.0:
            lr, wd = self._unorm_scaled(name, p, grad, state, b1, b2, b3, alpha, eps, wd, step, lr, gnorm_scale,
                                        max_unorm, skip_zeros)  # fmt: skip
        self._op("optimizer_update_8bit_blockwise", p.device)(
            name, grad, p, s1, s2, b1, b2, b3, alpha, eps, step, lr,
            state["qmap1"], state.get("qmap2"), state["absmax1"], state.get("absmax2"), wd, gnorm_scale, skip_zeros,
        )  # fmt: skip

    @staticmethod
    def _unorm_scaled(name, p, grad, state, b1, b2, b3, alpha, eps, wd, step, lr, gnorm_scale, max_unorm, skip_zeros):
        """8-bit state with max_unorm: measure the update norm first (one extra pass, one sync) and
        return ``(lr, weight_decay)`` that apply the clipped update in the fused kernel."""
        n = p.numel()
        nb = optim_num_blocks(n)

        def deq(codes, absmax, qmap):
            scale = absmax.reshape(-1).repeat_interleave(OPTIM_BLOCKSIZE)[: codes.numel()]
            return qmap[codes.reshape(-1).long()] * scale

        c1 = state["state1"].reshape(-1)
        a1 = state["absmax1"].reshape(-1)
        s1 = deq(c1[:n], a1[:nb], state["qmap1"])
        s3 = deq(c1[n:], a1[nb:], state["qmap1"]) if name == "ademamix" else None
        s2 = deq(state["state2"], state["absmax2"], state["qmap2"]) if name in TWO_STATE else None
        hp = hyper(name, b1, b2, b3, alpha, eps, wd, step, lr, gnorm_scale)
        *_, u, _ = update_direction(name, hp, grad.reshape(-1).float(), p.reshape(-1).float(), s1, s2, s3, skip_zeros)
        unorm = float((u * u).sum().item())
        state["unorm_vec"].fill_(unorm)
        limit = max_unorm * float(p.detach().float().norm().item())
        norm = math.sqrt(unorm)
        if norm <= limit or norm == 0.0:
            return lr, wd
        scale = limit / norm
        if scale <= 0.0:
            return 0.0, wd
        return lr * scale, (wd / scale if name in DECOUPLED else wd)


_is_compiling = getattr(torch.compiler, "is_compiling", None)


def _compiling() -> bool:
    return bool(_is_compiling is not None and _is_compiling())


def _check_name(optimizer_name: str) -> None:
    if optimizer_name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer name {optimizer_name!r}; expected one of {OPTIMIZERS}")


def _options(
    optim_bits: int, min_8bit_size: int, percentile_clipping: int, block_wise: bool, max_unorm: float, skip_zeros: bool
) -> MockArgs:
    """The per-optimizer options as the release keeps them (``self.args``), when none are given."""
    return MockArgs(
        dict(
            optim_bits=optim_bits,
            min_8bit_size=min_8bit_size,
            percentile_clipping=percentile_clipping,
            block_wise=block_wise,
            max_unorm=max_unorm,
            skip_zeros=skip_zeros,
        )
    )


class Optimizer2State(Optimizer8bit):
    """Optimizers with two states per parameter: adam, lamb, ademamix."""

    def __init__(
        self,
        optimizer_name: str,
        params: Any,
        lr: float = 1e-3,
        betas: Any = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        optim_bits: int = 32,
        args: Any = None,
        min_8bit_size: int = 4096,
        percentile_clipping: int = 100,
        block_wise: bool = True,
        max_unorm: float = 0.0,
        skip_zeros: bool = False,
        is_paged: bool = False,
        alpha: float = 0.0,
        t_alpha: int | None = None,
        t_beta3: int | None = None,
    ) -> None:
        _check_name(optimizer_name)
        if optimizer_name not in TWO_STATE:
            raise ValueError(f"{optimizer_name!r} keeps one state; use Optimizer1State")
        betas = _check_hyper(lr, eps, betas, weight_decay)
        _check_options(optim_bits, min_8bit_size, percentile_clipping, max_unorm)
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, alpha=alpha, t_alpha=t_alpha, t_beta3=t_beta3
        )
        super().__init__(params, defaults, optim_bits, is_paged)
        self.args = (
            args
            if args is not None
            else _options(optim_bits, min_8bit_size, percentile_clipping, block_wise, max_unorm, skip_zeros)
        )
        self.optimizer_name = optimizer_name

    @torch.no_grad()
    def init_state(self, group, p, gindex, pindex):
        self._alloc(self.optimizer_name, p, self.get_config(gindex, pindex, group), two=True)

    def update_step(self, group, p, gindex, pindex):
        if torch.is_grad_enabled():  # step() runs without grad; a direct call gets no_grad here
            with torch.no_grad():
                return self.update_step(group, p, gindex, pindex)
        config = self.get_config(gindex, pindex, group)
        betas = tuple(config["betas"])
        alpha = float(config.get("alpha") or 0.0)
        if self.optimizer_name == "ademamix":
            if len(betas) != 3:
                raise ValueError(f"AdEMAMix needs betas=(beta1, beta2, beta3), got {betas}")
            step = self.state[p]["step"] + 1
            betas = (betas[0], betas[1], _beta3_schedule(betas[0], betas[2], step, config.get("t_beta3")))
            alpha = _alpha_schedule(alpha, step, config.get("t_alpha"))
        self._update(self.optimizer_name, p, config, betas, alpha)


class Optimizer1State(Optimizer8bit):
    """Optimizers with one state per parameter: momentum, lars, rmsprop, adagrad, lion."""

    def __init__(
        self,
        optimizer_name: str,
        params: Any,
        lr: float = 1e-3,
        betas: Any = (0.9, 0.0),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        optim_bits: int = 32,
        args: Any = None,
        min_8bit_size: int = 4096,
        percentile_clipping: int = 100,
        block_wise: bool = True,
        max_unorm: float = 0.0,
        skip_zeros: bool = False,
        is_paged: bool = False,
    ) -> None:
        _check_name(optimizer_name)
        if optimizer_name in TWO_STATE:
            raise ValueError(f"{optimizer_name!r} keeps two states; use Optimizer2State")
        betas = _check_hyper(lr, eps, betas, weight_decay)
        _check_options(optim_bits, min_8bit_size, percentile_clipping, max_unorm)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults, optim_bits, is_paged)
        self.args = (
            args
            if args is not None
            else _options(optim_bits, min_8bit_size, percentile_clipping, block_wise, max_unorm, skip_zeros)
        )
        self.optimizer_name = optimizer_name

    @torch.no_grad()
    def init_state(self, group, p, gindex, pindex):
        self._alloc(self.optimizer_name, p, self.get_config(gindex, pindex, group), two=False)

    def update_step(self, group, p, gindex, pindex):
        if torch.is_grad_enabled():  # step() runs without grad; a direct call gets no_grad here
            with torch.no_grad():
                return self.update_step(group, p, gindex, pindex)
        config = self.get_config(gindex, pindex, group)
        self._update(self.optimizer_name, p, config, tuple(config["betas"]), 0.0)


def _check_options(optim_bits: int, min_8bit_size: int, percentile_clipping: int, max_unorm: float) -> None:
    if optim_bits not in (8, 32):
        raise ValueError(f"optim_bits must be 8 or 32, got {optim_bits!r}")
    if not isinstance(min_8bit_size, int) or min_8bit_size < 0:
        raise ValueError(f"min_8bit_size must be a non-negative int, got {min_8bit_size!r}")
    if not isinstance(percentile_clipping, int) or not 1 <= percentile_clipping <= 100:
        raise ValueError(f"percentile_clipping must be an int in [1, 100], got {percentile_clipping!r}")
    if max_unorm is None or not math.isfinite(max_unorm) or max_unorm < 0.0:
        raise ValueError(f"max_unorm must be a finite value >= 0, got {max_unorm!r}")


def _alpha_schedule(alpha: float, step: int, t_alpha: int | None) -> float:
    """Linear warm-up of AdEMAMix's alpha over t_alpha steps."""
    if not t_alpha:
        return alpha
    return min(step * alpha / t_alpha, alpha)


def _beta3_schedule(beta1: float, beta3: float, step: int, t_beta3: int | None) -> float:
    """AdEMAMix's beta3 warm-up: the EMA half-life grows from beta1's to beta3's over t_beta3 steps."""
    if not t_beta3 or beta3 <= 0.0 or beta1 <= 0.0:
        return beta3
    frac = min(step / t_beta3, 1.0)
    lb1, lb3 = math.log(beta1), math.log(beta3)
    return min(math.exp(lb1 * lb3 / ((1.0 - frac) * lb3 + frac * lb1)), beta3)
