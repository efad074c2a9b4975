"""`augplug views`: every registered generator renders a labelled grid on a fitting data set."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from test_pictures_labels import find_text

import augplug
from augplug.cli import main as cli_main
from augplug.demo import views_main
from augplug.pictures import text_width

SMALL = ["--rows", "2", "--count", "1"]


def render(tmp_path, *argv) -> np.ndarray:
    path = tmp_path / "grid.png"
    assert views_main([*argv, *SMALL, "-o", str(path)]) == 0
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        return np.asarray(image)


@pytest.mark.parametrize("name", augplug.available("views"))
def test_every_registered_generator_renders(tmp_path, name, capsys):
    picture = render(tmp_path, "--views", name)
    message = capsys.readouterr().err
    assert f"wrote {tmp_path / 'grid.png'} ({name} on " in message
    assert find_text(picture, "input", 2) or find_text(picture, "input", 1)
    assert find_text(picture, "view 1", 2) or find_text(picture, "view 1", 1)
    assert picture.shape[1] >= 2 * 128  # two columns of readable cells


def test_waveform_views_draw_clips_and_their_differences(tmp_path, capsys):
    picture = render(tmp_path, "--views", "waveform_gain", "--delta")
    assert "on audio-patterns" in capsys.readouterr().err
    for header in ("input", "view 1", "view 1 - input"):
        assert find_text(picture, header, 2), header
    # Each clip cell is 256 px wide: three columns and their 1-px gaps.
    assert picture.shape[1] == 3 * 256 + 4


def test_log_mel_shows_clips_then_spectrograms(tmp_path, capsys):
    picture = render(tmp_path, "--views", "log_mel")
    assert "log_mel on audio-patterns" in capsys.readouterr().err
    assert picture.shape[1] == 256 + 128 + 3  # a clip, a 64 x 64 log-mel shown at 2x


def test_a_one_channel_generator_defaults_to_spectrograms(tmp_path, capsys):
    render(tmp_path, "--views", "spectrogram_viewmaker")
    assert "spectrogram_viewmaker on audio-patterns" in capsys.readouterr().err


def test_title_names_the_generator_data_and_arguments(tmp_path):
    picture = render(
        tmp_path, "--views", "simclr", "--data", "shapes-on-photos", "--arg", "size=32"
    )
    assert find_text(picture, "simclr on shapes-on-photos (size=32)", 2)
    assert text_width("simclr on shapes-on-photos (size=32)", 2) <= picture.shape[1]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--views", "waveform_noise", "--data", "digits-on-photos"], "Use --data audio-patterns"),
        (["--views", "simclrr"], "'simclrr' is not registered; choose from"),
        (["--views", "simclr", "--arg", "sise=3"], "did you mean 'size'"),
        (["--views", "simclr", "--arg", "size=16", "--delta"], "--delta: the views' shape"),
        (["--views", "simclr", "--rows", "0"], "--rows: expected an int >= 1"),
    ],
)
def test_usage_errors_say_what_to_type(tmp_path, capsys, argv, expected):
    with pytest.raises(SystemExit):
        views_main([*argv, "-o", str(tmp_path / "g.png")])
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()


def test_required_arguments_use_the_declared_example_or_are_asked_for(tmp_path, capsys):
    render(tmp_path, "--views", "byol")  # declares example_kwargs = {"branch": 0}
    assert "byol needs arguments; using its example --arg branch=0" in capsys.readouterr().err

    class Tinted(augplug.ViewGenerator):
        input_layout = "(B, C, H, W)"

        def __init__(self, strength: float):
            super().__init__()
            self.strength = strength

        def forward(self, x, *, generator=None):
            return x * self.strength

    class Plugin:
        @augplug.hookimpl
        def augplug_register_views(self, register):
            register("tinted", Tinted)

    with augplug.registry.isolated() as registry:
        registry.register_plugin(Plugin(), "tinted-plugin")
        with pytest.raises(SystemExit):
            views_main(["--views", "tinted", "-o", str(tmp_path / "t.png")])
        assert "'tinted' needs --arg strength=VALUE" in capsys.readouterr().err
        render(tmp_path, "--views", "tinted", "--arg", "strength=0.5")


def test_help_texts_have_no_restructuredtext_markup(capsys):
    for argv in (["--help"], ["views", "--help"], ["demo", "--help"]):
        with pytest.raises(SystemExit):
            cli_main(argv)
        text = capsys.readouterr().out
        assert "``" not in text and ":func:" not in text and ":class:" not in text, argv


@pytest.mark.parametrize(
    ("alias", "kind"),
    [
        ("view", "views"),
        ("feature", "features"),
        ("objectives", "objective"),
        ("datasets", "dataset"),
    ],
)
def test_kinds_are_accepted_singular_and_plural(capsys, alias, kind):
    assert augplug.available(alias) == augplug.available(kind)
    assert cli_main(["list", alias]) == 0
    assert capsys.readouterr().out.startswith(f"{kind}: ")
    name = augplug.available(kind)[0]
    assert augplug.describe(alias, name).kind == kind
    assert cli_main(["describe", alias, name]) == 0
    assert f"{kind}/{name}" in capsys.readouterr().out
    assert type(augplug.create("objectives", "infonce")) is type(
        augplug.create("objective", "infonce")
    )
