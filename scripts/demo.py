"""The main job: bitsandbytes end to end, as a transformers/PEFT user sees it.

    python scripts/demo.py            # GPU when there is one, else CPU; a few minutes on 2 CPU cores
    python scripts/demo.py --quick    # fewer steps (used by the test suite)

1. builds a small Llama-style language model from a config and teaches it a short text (the Zen
   of Python, character level) with ``bitsandbytes.optim.AdamW8bit``;
2. quantizes it to NF4 and to int8 through ``BitsAndBytesConfig`` and shows memory, speed and
   generated text before and after;
3. fine-tunes LoRA adapters on the NF4 model (QLoRA, PEFT) with ``PagedAdamW8bit`` to teach it a
   new sentence, with a progress bar and the loss falling;
4. saves the quantized model and the adapters, reloads both and checks they generate the same.

Exit code 0 when every check holds, 1 otherwise. No network: everything is built here.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import io
import logging
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

FINE_TUNE_TEXT = "bitsandbytes: four-bit weights, eight-bit optimizers, full-precision results. "
PROMPT = "Beautiful is"
FT_PROMPT = "bitsandbytes:"


def zen_of_python() -> str:
    import this  # prints the text on first import; silenced by the caller

    return codecs.decode(this.s, "rot13")


with contextlib.redirect_stdout(io.StringIO()):
    ZEN = zen_of_python()


class CharTokenizer:
    """Character-level tokenizer over a fixed alphabet (id 0 is padding)."""

    def __init__(self, text: str) -> None:
        self.chars = ["<pad>", *sorted(set(text))]
        self.index = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> torch.Tensor:
        unknown = sorted({c for c in text if c not in self.index})
        if unknown:
            raise ValueError(f"characters outside the alphabet: {unknown}")
        return torch.tensor([self.index[c] for c in text], dtype=torch.long)

    def decode(self, ids: torch.Tensor) -> str:
        return "".join(self.chars[i] for i in ids.tolist() if i != 0)


@dataclass
class Row:
    name: str
    memory_mib: float
    ms_per_token: float
    logits_rel_err: float | None
    sample: str


def batches(ids: torch.Tensor, seq: int, batch: int, generator: torch.Generator) -> torch.Tensor:
    starts = torch.randint(0, ids.numel() - seq - 1, (batch,), generator=generator)
    return torch.stack([ids[s : s + seq] for s in starts.tolist()])


def progress(total: int, desc: str, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=quiet, file=sys.stdout, dynamic_ncols=True, leave=True)


def generate(model, tok: CharTokenizer, prompt: str, n: int, device: str) -> tuple[str, float]:
    ids = tok.encode(prompt).unsqueeze(0).to(device)
    with torch.no_grad():
        model.generate(ids, max_new_tokens=2, do_sample=False, pad_token_id=0)  # warm-up, not timed
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = model.generate(ids, max_new_tokens=n, do_sample=False, pad_token_id=0)
        if device == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    return tok.decode(out[0, ids.shape[1] :].cpu()), 1000 * elapsed / n


def footprint_mib(model) -> float:
    return model.get_memory_footprint() / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="fewer training steps (for tests)")
    parser.add_argument("--out", type=Path, help="folder for the saved models (default: a temporary folder)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # show each step as it happens, even in a log
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    import peft
    import transformers
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    import bitsandbytes as bnb

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    device, dtype = args.device, torch.bfloat16
    pretrain_steps, finetune_steps = (20, 16) if args.quick else (150, 60)
    sample_len = 24 if args.quick else 60
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        print(f"  [{'ok' if ok else 'FAILED'}] {what}")
        if not ok:
            failures.append(what)

    out_dir = args.out or Path(tempfile.mkdtemp(prefix="bnb-demo-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"bitsandbytes {bnb.__version__} on {device}"
        + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else f" ({os.cpu_count()} CPU cores)")
        + f", torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}"
    )
    print(f"saving to {out_dir}\n")

    # 1. a small language model, taught the Zen of Python with an 8-bit optimizer ------------------
    tok = CharTokenizer(ZEN + FINE_TUNE_TEXT)
    data = tok.encode(ZEN)
    config = transformers.LlamaConfig(
        vocab_size=len(tok.chars),
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=None,  # character model: no special tokens, generation runs its full length
        eos_token_id=None,
    )
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"1. a {n_params / 1e6:.2f} M-parameter Llama-style model learns the Zen of Python "
        f"({len(ZEN)} characters) with bnb.optim.AdamW8bit"
    )
    optimizer = bnb.optim.AdamW8bit(model.parameters(), lr=3e-3, weight_decay=0.0, min_8bit_size=1024)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=pretrain_steps, pct_start=0.1)
    model.train()
    first = last = None
    with progress(pretrain_steps, "   pre-training", args.quiet) as bar:
        for _ in range(pretrain_steps):
            x = batches(data, 64, 8, gen).to(device)
            loss = model(input_ids=x, labels=x).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            first = loss.item() if first is None else first
            last = loss.item()
            bar.set_postfix(loss=f"{last:.3f}")
            bar.update()
    state_bytes = sum(
        v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)
    )
    print(
        f"   loss {first:.2f} -> {last:.2f}; optimizer state {state_bytes / n_params:.2f} bytes/parameter "
        f"(torch AdamW: 8)"
    )
    check(last < (0.8 if args.quick else 0.3) * first, "pre-training loss fell")
    model.eval()
    dense_dir = out_dir / "dense"
    model.to(dtype).save_pretrained(dense_dir)
    del model, optimizer

    # 2. quantize: NF4 and int8 -------------------------------------------------------------------
    print("\n2. the same model in bf16, NF4 (4-bit) and int8 (LLM.int8()), loaded with BitsAndBytesConfig")
    probe = tok.encode(ZEN[:128]).unsqueeze(0).to(device)
    dense = AutoModelForCausalLM.from_pretrained(dense_dir, dtype=dtype, device_map=device)
    with torch.no_grad():
        ref_logits = dense(probe).logits.float()
    text, ms = generate(dense, tok, PROMPT, sample_len, device)
    rows = [Row("bf16 (dense)", footprint_mib(dense), ms, None, text)]
    variants = {
        "NF4 + double quant": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        ),
        "int8 (threshold 6)": BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=6.0),
    }
    for name, qconfig in variants.items():
        qmodel = AutoModelForCausalLM.from_pretrained(
            dense_dir, quantization_config=qconfig, dtype=dtype, device_map=device
        )
        with torch.no_grad():
            logits = qmodel(probe).logits.float()
        err = float((logits - ref_logits).norm() / ref_logits.norm())
        text, ms = generate(qmodel, tok, PROMPT, sample_len, device)
        rows.append(Row(name, footprint_mib(qmodel), ms, err, text))
        del qmodel
    print(f"   {'model':20} {'memory':>10} {'ms/token':>9} {'logits err':>11}   greedy continuation of {PROMPT!r}")
    for r in rows:
        err = "-" if r.logits_rel_err is None else f"{r.logits_rel_err:.3f}"
        print(f"   {r.name:20} {r.memory_mib:8.2f} MiB {r.ms_per_token:9.1f} {err:>11}   {r.sample!r}")
    check(rows[1].memory_mib < 0.5 * rows[0].memory_mib, "NF4 model takes less than half the bf16 memory")
    check(rows[2].memory_mib < 0.75 * rows[0].memory_mib, "int8 model takes less memory than bf16")
    check(rows[1].logits_rel_err < 0.35, "NF4 logits stay close to bf16")
    check(rows[2].logits_rel_err < 0.05, "int8 logits stay close to bf16")

    # 3. QLoRA: LoRA adapters on the NF4 model, PagedAdamW8bit --------------------------------------
    print(f"\n3. QLoRA: LoRA adapters on the NF4 model learn {FINE_TUNE_TEXT.strip()!r} with bnb.optim.PagedAdamW8bit")
    base = AutoModelForCausalLM.from_pretrained(
        dense_dir, quantization_config=variants["NF4 + double quant"], dtype=dtype, device_map=device
    )
    nf4_dir = out_dir / "nf4"
    base.save_pretrained(nf4_dir)  # the quantized model itself, in the reference release's format
    base = peft.prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    lora = peft.LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )
    qlora = peft.get_peft_model(base, lora)
    trainable = [p for p in qlora.parameters() if p.requires_grad]
    n_train = sum(p.numel() for p in trainable)
    print(f"   trainable: {n_train / 1e3:.1f} K parameters ({100 * n_train / n_params:.1f}% of the model)")
    ft_data = tok.encode(FINE_TUNE_TEXT * 8)
    optimizer = bnb.optim.PagedAdamW8bit(trainable, lr=5e-3, min_8bit_size=1024)
    qlora.train()
    losses = []
    with progress(finetune_steps, "   fine-tuning", args.quiet) as bar:
        for _ in range(finetune_steps):
            x = batches(ft_data, 48, 4, gen).to(device)
            loss = qlora(input_ids=x, labels=x).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            bar.update()
    print(f"   loss {losses[0]:.2f} -> {losses[-1]:.2f}")
    check(sum(losses[-4:]) < (0.9 if args.quick else 0.3) * sum(losses[:4]), "fine-tuning loss fell")
    qlora.eval()
    tuned_text, _ = generate(qlora, tok, FT_PROMPT, len(FINE_TUNE_TEXT) - len(FT_PROMPT), device)
    print(f"   after fine-tuning, {FT_PROMPT!r} continues as {tuned_text!r}")
    if not args.quick:  # a few steps teach the words, not the whole sentence
        learned = tuned_text.strip().startswith(FINE_TUNE_TEXT[len(FT_PROMPT) :].strip()[:20])
        check(learned, "the adapters learned the sentence")

    # 4. save and reload --------------------------------------------------------------------------
    print("\n4. save the NF4 model and the adapters, reload both")
    qlora.save_pretrained(out_dir / "adapter")
    sizes = {
        "bf16 model": sum(f.stat().st_size for f in dense_dir.glob("*.safetensors")),
        "NF4 model": sum(f.stat().st_size for f in nf4_dir.glob("*.safetensors")),
        "LoRA adapters": sum(f.stat().st_size for f in (out_dir / "adapter").glob("*.safetensors")),
    }
    for name, size in sizes.items():
        print(f"   {name:14} {size / 2**20:7.2f} MiB on disk")
    reloaded_base = AutoModelForCausalLM.from_pretrained(nf4_dir, device_map=device)
    reloaded_base = peft.prepare_model_for_kbit_training(reloaded_base, use_gradient_checkpointing=False)
    reloaded = peft.PeftModel.from_pretrained(reloaded_base, out_dir / "adapter").eval()
    again, _ = generate(reloaded, tok, FT_PROMPT, len(FINE_TUNE_TEXT) - len(FT_PROMPT), device)
    print(f"   reloaded model continues {FT_PROMPT!r} as {again!r}")
    check(again == tuned_text, "the reloaded model generates the same text")
    n4 = sum(isinstance(m, bnb.nn.Linear4bit) for m in reloaded_base.modules())
    check(n4 == 7 * config.num_hidden_layers, f"the reloaded base is 4-bit ({n4} Linear4bit layers)")

    print(f"\n{'all checks passed' if not failures else f'{len(failures)} check(s) failed: ' + '; '.join(failures)}")
    return 0 if not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
