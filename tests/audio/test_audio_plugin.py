"""Registration, the missing-torchaudio path, the expert recipes and the spectrogram viewmaker."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import augplug_audio
import augplug_audio.plugin as audio_plugin
import pytest
import torch

import augplug
from augplug.registry import Registry

VIEWS = [
    "log_mel", "waveform_crop", "waveform_gain", "waveform_noise", "waveform_shift", "time_mask",
    "frequency_mask", "spectrogram_noise", "audio_waveform", "audio_spectral", "spectrogram_viewmaker",
]
WAVEFORM_VIEWS = ["waveform_crop", "waveform_gain", "waveform_noise", "waveform_shift", "audio_waveform", "log_mel"]
HINT = "pip install '.[audio]' in an augplug checkout (torchaudio)"


def test_every_component_is_registered_and_described():
    views = augplug.available("views")
    for name in VIEWS:
        if name == "spectrogram_viewmaker" and "viewmaker" not in views:
            continue  # needs the viewmaker plugin; covered below when it is installed
        assert name in views
        assert augplug.describe("views", name).doc
    assert "audio-patterns" in augplug.available("dataset")


def test_without_torchaudio_only_the_front_end_is_unavailable(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torchaudio" else real_find_spec(name, *a)
    )
    registry = Registry(autoload=False)
    info = registry.register_plugin(audio_plugin, "audio")
    assert info.status == "ok"
    assert info.unavailable == {"views/log_mel": f"needs torchaudio ({HINT})"}
    with pytest.raises(ImportError, match=re.escape(f"views 'log_mel' is unavailable: it needs torchaudio ({HINT})")):
        registry.create("views", "log_mel")
    assert "log_mel" not in registry.available("views")
    assert "unavailable: needs torchaudio" in str(registry.describe("views", "log_mel"))
    # Nothing else breaks: the pure-torch views and the dataset still build and run.
    views = registry.create("views", "audio_waveform")
    assert views(torch.randn(2, 100)).shape == (2, 100)
    assert len(registry.create("dataset", "audio-patterns", size=30)) == 30


def test_augplug_plugins_lists_the_front_end_as_unavailable_without_torchaudio(monkeypatch, capsys):
    from augplug import cli, registry

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torchaudio" else real_find_spec(name, *a)
    )
    monkeypatch.setattr(registry, "_registry", Registry())  # fresh discovery through the entry points
    assert cli.main(["plugins"]) in (0, 1)
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("audio "))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
    block = "\n".join(lines[start:end])
    assert " ok " in lines[start]
    assert "unavailable views/log_mel: needs torchaudio (pip install '.[audio]' in an augplug checkout (torchaudio))" in block
    assert "audio_waveform" in block and "audio-patterns" in block


def test_only_the_front_end_module_imports_torchaudio():
    """Keeps the missing-torchaudio path honest: the other modules must import without it."""
    package = Path(augplug_audio.__file__).parent
    importers = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(n.split(".")[0] == "torchaudio" for n in names):
                importers.add(path.name)
    assert importers == {"frontend.py"}


@pytest.mark.parametrize("name", WAVEFORM_VIEWS)
def test_waveform_components_build_with_defaults_and_replay(name):
    view, x = augplug.create("views", name), 0.3 * torch.randn(3, 2, 8064)
    params = view.sample(x, generator=torch.Generator().manual_seed(0))
    out = view.apply(x, params)
    assert out.shape[0] == 3 and out.dtype == x.dtype
    assert torch.equal(view.apply(x, params), out)
    assert torch.equal(view(x, generator=torch.Generator().manual_seed(0)), out)


def test_waveform_recipe_crops_then_adds_noise_at_the_drawn_snr():
    views = augplug.create("views", "audio_waveform", scale=[0.5, 0.5], snr_db=[20.0, 20.0])
    x = torch.randn(4, 1000)
    params = views.sample(x, generator=torch.Generator().manual_seed(1))
    assert set(params) == {"0.start", "0.length", "1.snr_db", "1.noise"}
    assert views.continuous_params == ("1.snr_db", "1.noise")
    out = views.apply(x, params)
    cropped = views.stages[0].apply(x, {"start": params["0.start"], "length": params["0.length"]})
    assert (cropped != 0).sum(1).eq(500).all()
    snr = 10 * torch.log10(cropped.square().mean(1) / (out - cropped).square().mean(1))
    torch.testing.assert_close(snr, torch.full((4,), 20.0), rtol=0, atol=0.1)


def test_spectral_recipe_masks_then_adds_noise():
    views = augplug.create("views", "audio_spectral", frequency_masks=2, time_masks=3, noise_std=0.0)
    x = torch.randn(5, 1, 64, 64)
    params = views.sample(x, generator=torch.Generator().manual_seed(2))
    assert params["0.start"].shape == (5, 2) and params["1.start"].shape == (5, 3)
    out = views.apply(x, params)
    frequency = views.stages[0].masked(x, {"start": params["0.start"], "width": params["0.width"]})
    time = views.stages[1].masked(x, {"start": params["1.start"], "width": params["1.width"]})
    covered = frequency[:, None, :, None] | time[:, None, None, :]
    assert torch.equal(out, torch.where(covered, torch.zeros(()), x))


def test_waveform_views_then_log_mel_compose_and_replay():
    chain = augplug.ComposedViews([augplug.create("views", "audio_waveform"), augplug.create("views", "log_mel")])
    x = 0.3 * torch.randn(2, 8064)
    params = chain.sample(x, generator=torch.Generator().manual_seed(3))
    out = chain.apply(x, params)
    assert out.shape == (2, 1, 64, 64) and torch.equal(chain.apply(x, params), out)


@pytest.mark.skipif("viewmaker" not in augplug.available("views"), reason="the viewmaker plugin is not installed")
@pytest.mark.parametrize("eps", [0.05, 0.125])
def test_spectrogram_viewmaker_is_one_channel_unclamped_with_budget_eps(eps):
    viewmaker = augplug.create("views", "spectrogram_viewmaker", eps=eps)
    assert viewmaker.channels == 1 and viewmaker.clamp is False and viewmaker.eps == eps
    x = 3.0 * torch.randn(2, 1, 32, 32) - 1.0  # normalised log-mels: far outside [0, 1]
    with torch.no_grad():
        view = viewmaker(x, generator=torch.Generator().manual_seed(0))
    assert view.shape == x.shape
    torch.testing.assert_close((view - x).abs().mean(dim=(1, 2, 3)), torch.full((2,), eps), rtol=1e-3, atol=1e-5)
    assert view.min() < 0 and view.max() > 1  # no clamp to the image range


@pytest.mark.cuda
@pytest.mark.parametrize("name", [n for n in VIEWS if n != "spectrogram_viewmaker"])
def test_views_run_on_cuda_without_host_sync(name):
    from augplug.checks import validation

    view = augplug.create("views", name).cuda()
    spectral = name in ("time_mask", "frequency_mask", "spectrogram_noise", "audio_spectral")
    x = torch.randn((256, 1, 64, 64) if spectral else (256, 16000), device="cuda")
    generator = torch.Generator(device="cuda").manual_seed(0)
    view(x, generator=generator)  # warm-up (lazy init may sync once)
    torch.cuda.synchronize()
    with validation(False):  # the finite check is the one deliberate sync
        torch.cuda.set_sync_debug_mode("error")
        try:
            out = view(x, generator=generator)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert out.device == x.device
