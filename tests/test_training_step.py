"""One training step for each preset family on tiny configs: EG3D, Mimic3D stage 1, stage 2, end to end."""

from __future__ import annotations

import pytest
import torch
from training_support import tiny_config, write_random_dataset

from mimic3d.training.loop import Trainer
from mimic3d.training.schedule import progress_at

ALL_PHASES = ["Gmain", "Greg", "Dmain", "Dreg", "Dpatch_main", "Dpatch_reg"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_random_dataset(tmp_path_factory.mktemp("training_step") / "data")


def _snapshot_params(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    after = module.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


def _run_one_step(trainer):
    seen = []
    accumulate = trainer.loss.accumulate

    def spy(phase, chunk, gain, progress):
        seen.append((phase, gain, progress))
        return accumulate(phase, chunk, gain, progress)

    trainer.loss.accumulate = spy
    before = {name: _snapshot_params(m) for name, m in trainer.nets.named().items()}
    objectives = trainer.train_step()
    return seen, before, objectives


def _check_common(trainer, seen, before, objectives, phases):
    assert [s[0] for s in seen] == phases
    assert all(
        gain == trainer.phases[[p.name for p in trainer.phases].index(name)].interval
        for name, gain, _ in seen
    )
    assert list(objectives) == phases and all(torch.isfinite(torch.tensor(v)) for v in objectives.values())
    progress = seen[0][2]
    assert progress == progress_at(trainer.config, 0)
    for name, module in trainer.nets.named().items():
        assert all(torch.isfinite(v).all() for v in module.state_dict().values()), name
    assert _changed(before["G"], trainer.nets.G), "G did not move"
    assert _changed(before["D"], trainer.nets.D), "D did not move"
    assert trainer.cur_nimg == trainer.config.run.batch_size and trainer.step == 1


def test_eg3d_step(dataset, tmp_path):
    trainer = Trainer(tiny_config("eg3d", dataset), tmp_path / "eg3d", progress_bar=False)
    seen, before, objectives = _run_one_step(trainer)
    _check_common(trainer, seen, before, objectives, ALL_PHASES[:4])
    assert seen[0][2].blur_sigma == trainer.config.schedule.blur_init_sigma > 0
    assert seen[0][2].swap_prob == 1.0
    # First step with the EMA ramp-up: beta = 0, G_ema becomes a copy of G.
    for p_ema, p in zip(trainer.nets.G_ema.parameters(), trainer.nets.G.parameters()):
        assert torch.equal(p_ema, p)
    seen2, _, objectives2 = _run_one_step(trainer)
    assert [s[0] for s in seen2] == ["Gmain", "Dmain"]  # lazy regularisers wait for their interval
    assert seen2[0][2] == progress_at(trainer.config, trainer.config.run.batch_size)
    assert seen2[0][2].blur_sigma < seen[0][2].blur_sigma and seen2[0][2].swap_prob < 1.0
    trainer.monitor.close()


def test_mimic3d_stage1_then_stage2_from_its_snapshot(dataset, tmp_path):
    stage1 = Trainer(tiny_config("stage1", dataset), tmp_path / "stage1", progress_bar=False)
    seen, before, objectives = _run_one_step(stage1)
    _check_common(stage1, seen, before, objectives, ALL_PHASES[:4])
    assert stage1.loss.lpips is None and stage1.nets.D_patch is None
    snapshot = stage1.save()
    stage1.monitor.close()

    config = tiny_config("stage2", dataset, f"run.init_from={tmp_path / 'stage1'}")
    stage2 = Trainer(config, tmp_path / "stage2", progress_bar=False)
    fresh = stage2.init_report.fresh
    # Exactly S^3D (blocks 2 and 3 of the last 3D-aware block) starts from scratch.
    assert fresh["G"] and all(".block2." in k or ".block3." in k for k in fresh["G"]), fresh["G"][:5]
    assert fresh["D"] == []
    stage1_G = {k: v for k, v in stage1.nets.G.state_dict().items()}
    for key, value in stage2.nets.G.state_dict().items():
        if key in stage1_G:
            assert torch.equal(value, stage1_G[key]), key
    assert (snapshot / "G_ema" / "model.safetensors").is_file()

    seen, before, objectives = _run_one_step(stage2)
    _check_common(stage2, seen, before, objectives, ALL_PHASES)
    assert seen[0][2].blur_sigma == 0.0 and seen[0][2].swap_prob == 0.5  # the official resume schedule
    assert _changed(before["D_patch"], stage2.nets.D_patch)
    changed_G = _changed(before["G"], stage2.nets.G)
    assert any(k in changed_G for k in fresh["G"]), "S^3D received no gradient"
    stage2.monitor.close()


def test_end_to_end_step_trains_both_branches(dataset, tmp_path):
    trainer = Trainer(tiny_config("e2e", dataset), tmp_path / "e2e", progress_bar=False)
    assert trainer.lpips is not None and not trainer.lpips.is_pretrained
    seen, before, objectives = _run_one_step(trainer)
    _check_common(trainer, seen, before, objectives, ALL_PHASES)
    stats = trainer.stats.reduce()
    for key in (
        "Loss/G/imitation",
        "Loss/G/imitation_l1",
        "Loss/G/patch",
        "Loss/D_patch/loss",
        "Loss/D_patch/reg",
        "Loss/G/reg",
        "Loss/D/reg",
    ):
        assert key in stats and stats[key]["num"] > 0, key
    trainer.monitor.close()


def test_pixel_imitation_alone_trains_the_3d_branch_without_lpips(dataset, tmp_path):
    config = tiny_config(
        "e2e", dataset, "loss.imitation_weight=0", "loss.patch_gan=0", "patch_discriminator=null"
    )
    trainer = Trainer(config, tmp_path / "l1", progress_bar=False)
    assert trainer.lpips is None and trainer.nets.D_patch is None
    before = {k: v.clone() for k, v in trainer.nets.G.state_dict().items()}
    trainer.train_step()
    changed = _changed(before, trainer.nets.G)
    assert any(".block3." in k for k in changed), "S^3D received no gradient"
    stats = trainer.stats.reduce()
    assert stats["Loss/G/imitation_l1"]["num"] > 0 and stats["Loss/G/imitation_l1"]["mean"] > 0
    trainer.monitor.close()
