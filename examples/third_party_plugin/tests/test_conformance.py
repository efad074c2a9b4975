"""The example plugin's own tests: augplug's conformance contracts on its two components.

Run from this folder with ``pytest tests``; once the plugin is installed,
``pytest --augplug-check example`` runs the same contracts, one test per component x
contract, through the registry.
"""

from augplug_example_plugin.plugin import GaussianNoiseViews, MSEAlignment

from augplug.testing import check_objective, check_parametric_view_generator


def test_gaussian_noise_views_conform():
    # GaussianNoiseViews takes (B, D), (B, C, T) or (B, C, H, W); the kit feeds it images.
    check_parametric_view_generator(GaussianNoiseViews(max_sigma=0.5))


def test_mse_alignment_conforms():
    check_objective(MSEAlignment())
