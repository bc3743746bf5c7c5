"""Training loop: loss, class weights, early stopping, checkpoints, determinism, resume."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from conftest import tiny_config, tiny_data
from safetensors.torch import load_file

from fasflow.config import run_settings
from fasflow.losses import class_weights, distillation_loss
from fasflow.models import MODEL_FILES, create_model, save_weights
from fasflow.train import EarlyStopping, binary_rates, lr_factor, train_config, train_model

torch.set_num_threads(1)


def test_distillation_loss_matches_hand_computation():
    student = torch.tensor([[2.0, 0.0]])
    teacher = torch.tensor([[0.0, 1.0]])
    target = torch.tensor([0])
    weight = torch.tensor([1.0, 3.0])
    alpha, T = 0.25, 2.0
    # CE (one sample, weight cancels in the weighted mean): -log softmax(s)[0]
    ce = -math.log(math.exp(2) / (math.exp(2) + 1))
    p_t = [math.exp(0) / (1 + math.exp(0.5)), math.exp(0.5) / (1 + math.exp(0.5))]
    p_s = [math.exp(1) / (math.exp(1) + 1), 1 / (math.exp(1) + 1)]
    kl = sum(t * math.log(t / s) for t, s in zip(p_t, p_s))
    expected = (1 - alpha) * ce + alpha * T**2 * kl
    got = distillation_loss(student, teacher, target, weight, alpha, T).item()
    assert got == pytest.approx(expected, rel=1e-6)
    # alpha = 0 is plain weighted CE
    assert distillation_loss(student, teacher, target, weight, 0.0, T).item() == pytest.approx(ce, rel=1e-6)


def test_class_weights_inverse_frequency():
    weights = class_weights(np.array([0, 1, 1, 1]))
    assert weights.tolist() == pytest.approx([2.0, 2 / 3])
    with pytest.raises(ValueError, match="every class"):
        class_weights(np.array([1, 1]))


def test_early_stopping_on_scripted_sequence():
    stopper = EarlyStopping(patience=2)
    f1s = [0.5, 0.7, 0.7, 0.6, 0.65, 0.9]
    losses = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]
    stopped_at = None
    for epoch, (f1, loss) in enumerate(zip(f1s, losses), start=1):
        stopper.update(epoch, f1, loss)
        if stopper.should_stop:
            stopped_at = epoch
            break
    # epoch 3 ties on F1 with lower loss -> new best; epochs 4 and 5 do not improve -> stop at 5
    assert stopper.best_epoch == 3
    assert stopped_at == 5


def test_binary_rates_spoof_positive():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    preds = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 0])
    rates = binary_rates(labels, preds)
    assert rates["apcer"] == pytest.approx(1 / 6)
    assert rates["bpcer"] == pytest.approx(1 / 4)
    assert rates["acer"] == pytest.approx((1 / 6 + 1 / 4) / 2)
    assert rates["f1"] == pytest.approx(2 * 5 / (2 * 5 + 1 + 1))


def run_config(name="S0", **changes):
    """The tiny study's TrainConfig of `name`, with `changes` to its fields."""
    settings = run_settings(tiny_config({"train": {"input_size": 16, "batch_size": 8, "max_epochs": 3, "seed": 3}}), name)
    hyper = {**settings["hyperparameters"], "patience": 5, "lr": 1e-3}
    cfg = train_config(name, settings["arch"], settings["train"], hyper)
    return dataclasses.replace(cfg, **changes)


def outputs_in(folder):
    return {role: folder / file for role, file in MODEL_FILES.items()}


def run(tmp_path, cfg, **kw):
    faces, labels = tiny_data()
    vfaces, vlabels = tiny_data(12, seed=1)
    return train_model(cfg, faces, labels, vfaces, vlabels, outputs_in(tmp_path), **kw)


def test_outputs_and_determinism(tmp_path):
    a = run(tmp_path / "a", run_config())
    b = run(tmp_path / "b", run_config())
    wa = load_file(str(tmp_path / "a" / "weights.safetensors"))
    wb = load_file(str(tmp_path / "b" / "weights.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (tmp_path / "a" / "history.csv").read_text().splitlines()[0].startswith("epoch,train_loss,val_loss,val_f1")
    assert a["best_epoch"] == b["best_epoch"] and 1 <= a["best_epoch"] <= 3
    assert not (tmp_path / "a" / "resume").exists()
    c = run(tmp_path / "c", run_config(seed=4))
    wc = load_file(str(tmp_path / "c" / "weights.safetensors"))
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


class Killed(Exception):
    pass


def test_resume_after_kill_equals_uninterrupted(tmp_path):
    cfg = run_config(max_epochs=3, optimizer="adamw")
    run(tmp_path / "full", cfg)

    def kill_after_two(epoch, row):
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        run(tmp_path / "killed", cfg, on_epoch=kill_after_two)
    assert (tmp_path / "killed" / "resume" / "state.json").is_file()
    assert not (tmp_path / "killed" / "weights.safetensors").exists()
    epochs_seen = []
    summary = run(tmp_path / "killed", cfg, on_epoch=lambda e, r: epochs_seen.append(e))
    assert epochs_seen == [3]  # resumed after epoch 2, did not start over
    full = load_file(str(tmp_path / "full" / "weights.safetensors"))
    resumed = load_file(str(tmp_path / "killed" / "weights.safetensors"))
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    assert summary["epochs_run"] == 3
    assert (tmp_path / "full" / "history.csv").read_text().count("\n") == (tmp_path / "killed" / "history.csv").read_text().count("\n")


def test_distillation_with_frozen_teacher(tmp_path):
    teacher = create_model("mobilenetv2_050", dropout=0.0)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    summary = run(tmp_path, run_config(name="S2", distill=True, alpha=0.6, temperature=4.0, max_epochs=1), teacher=teacher)
    assert summary["hyperparameters"]["alpha"] == 0.6
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not teacher.training


def test_distillation_without_teacher_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="needs a teacher"):
        run(tmp_path, run_config(distill=True, max_epochs=1))


def test_student_has_paper_parameter_count():
    model = create_model("mobilenetv2_100", dropout=0.2)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 2.23


def test_pretrained_weights_loaded_from_local_file(tmp_path):
    source = create_model("mobilenetv2_050", dropout=0.0, num_classes=1000)
    save_weights(source, tmp_path / "mobilenetv2_050.safetensors")
    model = create_model("mobilenetv2_050", dropout=0.1, pretrained=tmp_path / "mobilenetv2_050.safetensors")
    own, ref = model.state_dict(), source.state_dict()
    assert torch.equal(own["conv_stem.weight"], ref["conv_stem.weight"])
    assert own["classifier.weight"].shape == (2, ref["classifier.weight"].shape[1])


def test_pretrained_missing_file_names_it(tmp_path):
    from fasflow.errors import ConfigError

    with pytest.raises(ConfigError, match=r"mobilenetv2_050\.safetensors.*fetch_pretrained"):
        create_model("mobilenetv2_050", 0.0, pretrained=tmp_path / "mobilenetv2_050.safetensors")


def test_train_config_carries_the_shared_train_settings():
    config = tiny_config({"train": {"crop_scale": [0.5, 1.0]}})
    s2 = run_settings(config, "S2")
    cfg = train_config("S2", s2["arch"], s2["train"], s2["hyperparameters"], seed=7)
    assert cfg.crop_scale == (0.5, 1.0) and cfg.distill and cfg.seed == 7 and cfg.alpha == 0.6
    teacher = run_settings(config, "teacher")
    cfg = train_config("teacher", teacher["arch"], teacher["train"], teacher["hyperparameters"], overrides={"lr": 3e-3})
    assert cfg.lr == 3e-3 and not cfg.distill and cfg.alpha is None and cfg.pretrained is None
    assert cfg.arch == config["models"]["teacher"] and cfg.seed == config["train"]["seed"]


def test_resumed_run_carries_the_interrupted_log_over(tmp_path):
    from fasflow.runlog import setup_logging

    log = tmp_path / "train.log"
    setup_logging(log)
    cfg = run_config(max_epochs=2)

    def kill_after_one(epoch, row):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        run(tmp_path / "m", cfg, on_epoch=kill_after_one)
    first = log.read_text()
    assert "epoch 1/2" in first
    log.unlink()  # Snakemake deletes a job's log before it runs the job again
    setup_logging(log)
    run(tmp_path / "m", cfg)
    resumed = log.read_text()
    assert "log of the interrupted run" in resumed and "epoch 1/2" in resumed and "epoch 2/2" in resumed
    setup_logging(None)


def test_lr_factor_is_the_epoch_cosine_without_warmup():
    steps = 7
    for step in range(5 * steps):
        epoch = step // steps
        assert lr_factor(step, steps, 5, 0) == pytest.approx(0.5 * (1 + math.cos(math.pi * epoch / 5)))
    # Epoch 1 runs at the full rate, the last epoch above zero.
    assert lr_factor(0, steps, 5, 0) == 1.0 and lr_factor(5 * steps - 1, steps, 5, 0) > 0


def test_lr_factor_warms_up_linearly_over_the_first_epochs():
    steps = 10
    ramp = [lr_factor(i, steps, 6, 2) for i in range(2 * steps)]
    assert ramp[0] == pytest.approx(1 / 20)
    assert all(b > a for a, b in zip(ramp, ramp[1:steps]))  # rising through epoch 1
    # After the warm-up, the cosine alone.
    assert lr_factor(2 * steps, steps, 6, 2) == pytest.approx(lr_factor(2 * steps, steps, 6, 0))


def test_gradient_clipping_bounds_every_step(tmp_path, monkeypatch):
    real_clip = torch.nn.utils.clip_grad_norm_
    norms_after = []

    def spy(parameters, max_norm, *args, **kwargs):
        parameters = list(parameters)
        real_clip(parameters, max_norm, *args, **kwargs)
        norms_after.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in parameters])).item())

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    plain = run(tmp_path / "plain", run_config(max_epochs=1))
    assert norms_after == []  # null: no clipping
    clipped = run(tmp_path / "clipped", run_config(max_epochs=1, grad_clip_norm=1e-3))
    assert len(norms_after) > 1 and max(norms_after) <= 1e-3 * 1.001
    assert plain["config"]["grad_clip_norm"] is None and clipped["config"]["grad_clip_norm"] == 1e-3
    a = load_file(str(tmp_path / "plain" / MODEL_FILES["weights"]))
    b = load_file(str(tmp_path / "clipped" / MODEL_FILES["weights"]))
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_warmup_reaches_the_training_run(tmp_path):
    plain = run(tmp_path / "plain", run_config(max_epochs=1, warmup_epochs=0))
    warm = run(tmp_path / "warm", run_config(max_epochs=1, warmup_epochs=1))
    assert warm["config"]["warmup_epochs"] == 1 and plain["config"]["warmup_epochs"] == 0
    # The ramp ends at the full rate: the last step of epoch 1 runs at lr in both runs...
    assert warm["history"][0]["lr"] == pytest.approx(plain["history"][0]["lr"])
    # ...but the smaller steps before it train other weights.
    a = load_file(str(tmp_path / "plain" / MODEL_FILES["weights"]))
    b = load_file(str(tmp_path / "warm" / MODEL_FILES["weights"]))
    assert any(not torch.equal(a[k], b[k]) for k in a)
