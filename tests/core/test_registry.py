"""The plugin registry: discovery, failure isolation, conflicts, argument checking, env switches."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import augplug
from augplug import registry

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_registry():
    """A registry that re-reads entry points, restored afterwards."""
    with registry.isolated() as reg:
        yield reg


def make_distribution(root: Path, dist: str, module: str, source: str, ep_name: str) -> None:
    """Write an installed-looking distribution: a module plus a .dist-info with entry_points.txt."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[augplug]\n{ep_name} = {module}\n")
    (info / "RECORD").write_text("")


GOOD_PLUGIN = """
    import augplug, torch

    class Shift(augplug.ViewGenerator):
        '''Adds a constant.'''
        def __init__(self, amount: float = 1.0):
            super().__init__()
            self.amount = amount
        def forward(self, x, *, generator=None):
            return x + self.amount

    @augplug.hookimpl
    def augplug_register_views(register):
        register("shift", Shift)
"""

BROKEN_IMPORT = """
    raise RuntimeError("this plugin is broken on purpose")
"""

BROKEN_HOOK = """
    import augplug

    @augplug.hookimpl
    def augplug_register_views(register):
        register("half-registered", lambda: None)
        raise RuntimeError("hook failed half way")
"""

DUPLICATE = """
    import augplug

    class Other(augplug.ViewGenerator):
        def forward(self, x, *, generator=None):
            return x

    @augplug.hookimpl
    def augplug_register_views(register):
        register("shift", Other)
"""


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_third_party_distribution_is_discovered_listed_and_usable(plugin_dir, fresh_registry):
    make_distribution(plugin_dir, "augplug-shift", "augplug_shift", GOOD_PLUGIN, "shift")
    make_distribution(plugin_dir, "augplug-broken", "augplug_broken", BROKEN_IMPORT, "broken")
    make_distribution(plugin_dir, "augplug-halfway", "augplug_halfway", BROKEN_HOOK, "halfway")
    infos = {p.name: p for p in augplug.plugins()}
    assert infos["shift"].status == "ok"
    assert infos["shift"].distribution == "augplug-shift" and infos["shift"].version == "1.2.3"
    assert infos["shift"].components == {"views": ["shift"]}
    assert infos["broken"].status == "failed" and "broken on purpose" in infos["broken"].error
    assert infos["halfway"].status == "failed" and "half way" in infos["halfway"].error
    # The failed plugin's partial registration is dropped; the good one works.
    assert "half-registered" not in augplug.available("views")
    view = augplug.create("views", "shift", amount=2.0)
    x = torch.zeros(3, 4)
    torch.testing.assert_close(view(x), x + 2.0)
    # Built-ins still load next to broken third-party plugins.
    assert all(p.status == "ok" for p in infos.values() if p.builtin)


def test_duplicate_names_are_an_error_naming_both(plugin_dir, fresh_registry):
    make_distribution(plugin_dir, "augplug-shift", "augplug_shift", GOOD_PLUGIN, "shift")
    make_distribution(plugin_dir, "augplug-dupe", "augplug_dupe", DUPLICATE, "dupe")
    with pytest.raises(augplug.DuplicateComponentError, match=r"'shift'.*'dupe'|'dupe'.*'shift'"):
        augplug.create("views", "shift")
    assert "shift" not in augplug.available("views")
    infos = {p.name: p for p in augplug.plugins()}
    errors = [infos[name].error or "" for name in ("shift", "dupe")]
    assert any("registered by both" in e and "'shift'" in e and "'dupe'" in e for e in errors)


def test_disable_autoload_keeps_only_builtins(plugin_dir, fresh_registry, monkeypatch):
    make_distribution(plugin_dir, "augplug-shift", "augplug_shift", GOOD_PLUGIN, "shift")
    monkeypatch.setenv("AUGPLUG_DISABLE_PLUGIN_AUTOLOAD", "1")
    infos = {p.name: p for p in augplug.plugins()}
    assert infos["shift"].status == "disabled"
    assert "shift" not in augplug.available("views")
    assert infos["kornia"].status == "ok"


def test_allow_list_names_which_external_plugins_load(plugin_dir, fresh_registry, monkeypatch):
    make_distribution(plugin_dir, "augplug-shift", "augplug_shift", GOOD_PLUGIN, "shift")
    make_distribution(plugin_dir, "augplug-broken", "augplug_broken", BROKEN_IMPORT, "broken")
    monkeypatch.setenv("AUGPLUG_PLUGINS", "augplug-shift")
    infos = {p.name: p for p in augplug.plugins()}
    assert infos["shift"].status == "ok"
    assert infos["broken"].status == "disabled"  # never imported, so it cannot fail


class Widget(augplug.ViewGenerator):
    """A test component with a documented signature."""

    def __init__(self, size: int, strength: float = 0.5, *, mode: str = "a"):
        super().__init__()
        self.size, self.strength, self.mode = size, strength, mode

    def forward(self, x, *, generator=None):
        return x


class InProcessPlugin:
    @augplug.hookimpl
    def augplug_register_views(self, register):
        register("widget", Widget)
        register("needs-missing", Widget, requires=("module_that_does_not_exist_42",), hint="pip install it")


@pytest.fixture
def widget_registry(fresh_registry):
    fresh_registry.register_plugin(InProcessPlugin(), "inproc")
    return fresh_registry


def test_create_checks_arguments(widget_registry):
    widget = augplug.create("views", "widget", size=3, mode="b")
    assert (widget.size, widget.strength, widget.mode) == (3, 0.5, "b")
    with pytest.raises(TypeError, match=r"unknown argument 'strenght' \(did you mean 'strength'\?\).*size, strength, mode"):
        augplug.create("views", "widget", size=3, strenght=0.1)
    with pytest.raises(TypeError, match="missing required argument.*size"):
        augplug.create("views", "widget")


def test_unknown_names_list_close_matches(widget_registry):
    with pytest.raises(augplug.ComponentNotFoundError, match="did you mean 'widget'"):
        augplug.create("views", "widgte")
    with pytest.raises(ValueError, match="kind: expected one of"):
        augplug.create("widgets", "widget")  # "view" and "views" are both kinds (issue 18)


def test_unavailable_component_reports_hint(widget_registry):
    assert "needs-missing" not in augplug.available("views")
    with pytest.raises(ImportError, match="module_that_does_not_exist_42.*pip install it"):
        augplug.create("views", "needs-missing")
    info = {p.name: p for p in augplug.plugins()}["inproc"]
    assert "views/needs-missing" in info.unavailable


def test_describe_gives_signature_defaults_doc_and_plugin(widget_registry):
    info = augplug.describe("views", "widget")
    assert info.plugin == "inproc"
    assert info.defaults == {"strength": 0.5, "mode": "a"}
    assert "size: int" in info.signature
    assert "documented signature" in info.doc
    assert "views/widget" in str(info)


def test_register_plugin_twice_under_one_name_is_refused(widget_registry):
    with pytest.raises(ValueError, match="already registered"):
        widget_registry.register_plugin(InProcessPlugin(), "inproc")


def test_unregister_removes_components(widget_registry):
    widget_registry.unregister_plugin("inproc")
    assert "widget" not in augplug.available("views")


def test_bad_factory_fails_only_that_plugin(fresh_registry):
    class BadFactory:
        @augplug.hookimpl
        def augplug_register_views(self, register):
            register("bad", 42)

    info = fresh_registry.register_plugin(BadFactory(), "bad-factory")
    assert info.status == "failed" and "factory must be callable" in info.error


def test_example_plugin_pip_installs_and_registers(tmp_path):
    """A real `pip install` of examples/third_party_plugin into a target dir, used from a subprocess."""
    target = tmp_path / "site"
    source = shutil.copytree(ROOT / "examples" / "third_party_plugin", tmp_path / "src")  # builds leave no files behind
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = textwrap.dedent("""
        import torch, augplug
        g = torch.Generator().manual_seed(0)
        view = augplug.create("views", "gaussian_noise", max_sigma=0.5)
        x = torch.zeros(4, 3)
        v = view(x, generator=g)
        assert v.shape == x.shape and bool((v != 0).any())
        loss = augplug.create("objective", "mse_alignment")(x + 1, x + 1)
        assert float(loss) == 0.0
        print("OK")
    """)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    listing = subprocess.run(
        [sys.executable, "-m", "augplug.cli", "plugins"], env=env, capture_output=True, text=True
    )
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("example "))
    assert "augplug-example-plugin 0.1.0" in lines[start] and " ok " in lines[start]
    block = "\n".join(lines[start : start + 3])
    assert "objective: mse_alignment" in block and "views: gaussian_noise" in block


def test_isolated_restores_the_previous_registry():
    before = registry.get_registry()
    with registry.isolated(autoload=False) as reg:
        assert registry.get_registry() is reg and augplug.available("views") == []
    assert registry.get_registry() is before


def test_a_misspelt_hook_fails_the_plugin_and_registers_nothing(fresh_registry):
    class Misspelt:
        @augplug.hookimpl
        def augplug_register_veiws(self, register):
            register("never", lambda: None)

        @augplug.hookimpl
        def augplug_register_features(self, register):
            register("also-never", lambda: None)

    info = fresh_registry.register_plugin(Misspelt(), "misspelt")
    assert info.status == "failed"
    assert info.error == "unknown hook 'augplug_register_veiws' (did you mean 'augplug_register_views'?)"
    assert info.components == {}
    assert "also-never" not in augplug.available("features")
    assert fresh_registry.manager.get_plugin("misspelt") is None

    # The next plugin registers normally: the failed one left nothing pending.
    class Good:
        @augplug.hookimpl
        def augplug_register_views(self, register):
            register("fine", lambda: None)

    assert fresh_registry.register_plugin(Good(), "good").status == "ok"
    # `augplug plugins` shows it failed, with the hint.
    from augplug.cli import _plugins_table

    row = next(line for line in _plugins_table().splitlines() if line.startswith("misspelt"))
    assert "failed" in row and "error: unknown hook 'augplug_register_veiws'" in row


def test_an_unrelated_hook_name_lists_the_known_hooks(fresh_registry):
    class Odd:
        @augplug.hookimpl
        def augplug_something_else(self, register):
            pass

    info = fresh_registry.register_plugin(Odd(), "odd")
    assert info.status == "failed"
    assert info.error.startswith("unknown hook 'augplug_something_else'")
