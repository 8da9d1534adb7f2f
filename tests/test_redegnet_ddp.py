"""f2n-train --method redegnet with data parallelism: 2 gloo workers with 2 samples each make the same
update of every network (DegNet, SynNet, their D, θ and its D) as one process with the 4 samples, in
float64; and a 2-worker run through the trainer (the environment torchrun sets) logs and checkpoints
once, from the main worker, and resumes from its run folder."""

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import SHARED_DATA

from f2n.training.redegnet import ReDegTrainConfig, build_models, train_redegnet
from f2n.training.redegnet_step import Criteria, ReDegLosses, ReDegModels, SRLosses, StepDraws, train_step

SAMPLES, SIZE = 4, 32
# The disentangling term is 4 / (a batch mean): not a mean over samples, so the doubled batch
# would not equal the workers' average (which is what DDP trains, here as in the official code).
CRITERIA = Criteria(ReDegLosses(perceptual=0.0, contrastive=0.0), SRLosses(perceptual=0.0))
DRAWS = StepDraws(switch=True, sr_resize="bilinear")


def _config(out: Path, steps: int = 1, resume: Path | None = None) -> ReDegTrainConfig:
    return ReDegTrainConfig(SHARED_DATA / "face_pairs_real", SHARED_DATA / "natural_hq", out, steps, batch_size=1,
                            size=SIZE, narrow=0.0625, style_dim=32, n_mlp=2, num_block=1, num_feat=8, num_grow_ch=4,
                            disc_feat=4, losses=CRITERIA.redeg, sr_losses=CRITERIA.sr, lr=1e-3, log_every=1,
                            resume=resume)


def _setup() -> tuple[ReDegModels, dict[str, torch.optim.Optimizer]]:
    torch.manual_seed(0)
    models = build_models(_config(Path("unused")), log=lambda _: None)
    modules = models.modules()
    for module in modules.values():
        module.double().train()
    return models, {name: torch.optim.Adam(module.parameters(), lr=1e-3) for name, module in modules.items()}


def _batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    names = ("face_hq", "face_lq", "face_syn_lq", "natural_hq", "natural_syn_lq", "sr_hq", "sr_target")
    batch = {name: torch.rand(SAMPLES, 3, SIZE, SIZE, generator=generator, dtype=torch.float64) * 2 - 1
             for name in names}
    batch["sr_noise"] = torch.randn(SAMPLES, 3, SIZE, SIZE, generator=generator, dtype=torch.float64) * 0.1
    return batch


def _step(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    models, optimizers = _setup()
    train_step(models, optimizers, batch, CRITERIA, DRAWS)
    return _state(models)


def _state(models: ReDegModels) -> dict[str, torch.Tensor]:
    return {f"{name}.{key}": value.detach().clone() for name, module in models.modules().items()
            for key, value in module.state_dict().items()}


def _worker(rank: int, world: int, ports: tuple[int, int, int], out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(ports[0]), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    dist.init_process_group("gloo")
    try:
        share = SAMPLES // world
        state = _step({name: t[rank * share:(rank + 1) * share] for name, t in _batch().items()})
        if rank == 0:
            torch.save(state, Path(out) / "rank0.pt")
    finally:
        dist.destroy_process_group()
    run = Path(out) / "run"  # the trainer joins and leaves the group itself, from the environment
    os.environ["MASTER_PORT"] = str(ports[1])
    train_redegnet(_config(run, steps=2), log=lambda line: print(f"rank {rank}: {line}"), progress=False, device="cpu")
    os.environ["MASTER_PORT"] = str(ports[2])
    train_redegnet(_config(run, steps=3, resume=run), log=lambda line: print(f"rank {rank}: {line}"), progress=False,
                   device="cpu")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # two spawned interpreters importing torch, and three tiny steps: ~20-40 s on the shared CPU
def test_two_gloo_workers_equal_one_process_with_the_doubled_batch_and_only_rank0_writes(
        shared_data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    mp.spawn(_worker, args=(2, (_free_port(), _free_port(), _free_port()), str(tmp_path)), nprocs=2, join=True)
    parallel = torch.load(tmp_path / "rank0.pt", weights_only=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        whole = _step(_batch())
        half = _step({name: t[: SAMPLES // 2] for name, t in _batch().items()})  # negative control
    finally:
        torch.set_num_threads(threads)
    models, _ = _setup()
    initial = _state(models)
    for prefix in ("degnet.", "generator.", "disc.", "sr.", "sr_disc."):  # every network learnt
        assert any(not torch.equal(whole[k], initial[k]) for k in whole if k.startswith(prefix)), prefix
    for key, value in whole.items():
        torch.testing.assert_close(parallel[key], value, rtol=1e-9, atol=1e-12, msg=key)
    assert any(not torch.allclose(half[k], whole[k], rtol=1e-6, atol=1e-9) for k in whole)

    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [1, 2, 3]  # one writer, and the resumed run did step 3 only
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*")) == [
        "step_0000002.train.safetensors", "step_0000003.train.safetensors"]
    printed = capfd.readouterr()
    assert "rank 0: resumed from" in printed.out and "rank 1:" not in printed.out
