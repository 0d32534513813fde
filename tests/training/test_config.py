import pytest
import tomllib

from pyro_hfvae.training.config import (
    COMMAND_LINE_KEYS,
    DEFAULT_CONFIG,
    ConfigError,
    component_factory,
    dumps_config,
    load_config,
    parse_override,
    resolve_config,
    shipped_configs,
)


def test_default_is_hfvae_on_dsprites():
    config = resolve_config()
    assert config["data"]["name"] == "dsprites"
    assert (config["model"]["num_classes"], config["model"]["style_dim"]) == (3, 10)
    assert (config["objective"]["beta"], config["objective"]["gamma"]) == (4.0, 3.0)
    # every constructor default is listed
    assert config["model"]["temperature"] == 0.66
    # the default run scores its Concrete by the argmax: with the relaxed density its class group collapsed
    assert config["objective"]["concrete_scoring"] == "argmax"
    assert config["objective"]["supervised_weight"] == 0.0  # a constructor default, listed


@pytest.mark.parametrize("name", sorted(shipped_configs()))
def test_shipped_configs_resolve_and_round_trip(name, tmp_path):
    config = load_config(name)
    path = tmp_path / "config.toml"
    path.write_text(dumps_config(config, header="a header\n\nwith a blank line"))
    assert load_config(path) == config
    with open(path, "rb") as file:
        assert tomllib.load(file) == config


def test_shipped_names():
    assert set(shipped_configs()) == {"hfvae_dsprites", "hfvae_mnist", "hfvae_mnist_ss", "provlae_dsprites",
                                      "hit_mnist"}
    paper = load_config("hfvae_dsprites")
    assert (paper["objective"]["beta"], paper["objective"]["gamma"]) == (4.0, 3.0)
    assert (paper["model"]["num_classes"], paper["model"]["style_dim"]) == (3, 10)
    mnist = load_config("hfvae_mnist.toml")
    assert (mnist["model"]["num_classes"], mnist["model"]["style_dim"]) == (10, 10)
    progressive = load_config("provlae_dsprites")
    assert (progressive["model"]["levels"], progressive["model"]["latent_dim"]) == (3, 2)


@pytest.mark.parametrize("config, expected", [
    ({"training": {"stpes": 1}}, "unknown key [training] stpes; did you mean 'steps'?"),
    ({"model": {"style_dims": 3}}, "did you mean 'style_dim'?"),
    ({"model": {"zzz": 3}}, "unknown key [model] zzz. Allowed keys for model 'conv_hfvae': architecture,"),
    ({"trainnig": {}}, "unknown section [trainnig]; did you mean 'training'?"),
    ({"data": {"name": "dsprite"}}, "expected [data] name to be one of 'digits', 'dsprites', 'fashion_mnist', "
                                    "'mnist', 'shapes3d' but got 'dsprite'; did you mean 'dsprites'?"),
    ({"training": {"steps": "many"}}, "expected [training] steps to be an int (like 2000) but got 'many'"),
    ({"training": {"steps": 1.5}}, "expected [training] steps to be an int"),
    ({"training": {"batch_size": 1}}, "expected [training] batch_size >= 2 but got 1"),
    ({"objective": {"beta": True}}, "expected [objective] beta to be a number"),
    ({"evaluation": {"preset": "fats"}}, "did you mean 'fast'?"),
    ({"evaluation": {"metrics": ["migg"]}}, "did you mean 'mig'?"),
    ({"training": {"device": "gpu"}}, "expected [training] device to be 'auto', 'cpu', 'cuda'"),
    ({"data": {"name": "mnist"}}, "missing key [data] root"),
    ({"optimizer": {"lr": 0.0}}, "expected [optimizer] lr > 0"),
    ({"optimizer": {"name": "adam", "clip_norm": 1.0}},
     "Allowed keys for optimizer 'adam': betas, eps, fused, lr, weight_decay"),
    ({"schedule": {"name": "progressive", "steps_per_level": 3}}, "expected [objective] name = 'hit'"),
    ({"schedule": {"name": "none", "pre_kl": 0.1}}, "unknown key [schedule] pre_kl"),
    # ranges and lengths of every kind of setting, before any run directory exists
    ({"training": {"steps": 0}}, "expected [training] steps >= 1 but got 0"),
    ({"training": {"steps": -5}}, "expected [training] steps >= 1 but got -5"),
    ({"training": {"log_every": 0}}, "expected [training] log_every >= 1 but got 0"),
    ({"training": {"checkpoint_every": -1}}, "expected [training] checkpoint_every >= 0 but got -1"),
    ({"training": {"num_threads": -2}}, "expected [training] num_threads >= 0 but got -2"),
    ({"training": {"seed": -1}}, "expected [training] seed >= 0 but got -1"),
    ({"training": {"seed": 2 ** 40}}, "expected [training] seed <= 4294967295 but got 1099511627776"),
    ({"evaluation": {"seed": -3}}, "expected [evaluation] seed >= 0 but got -3"),
    ({"evaluation": {"metrics": [1]}}, "expected [evaluation] metrics from "),
    ({"data": {"name": "digits", "subset": -4}}, "expected [data] subset >= 0"),
    ({"optimizer": {"betas": [0.9]}}, "expected [optimizer] betas to be two numbers in [0, 1), like [0.9, 0.999], "
                                      "but got [0.9]"),
    ({"optimizer": {"betas": [0.9, 1.5]}}, "expected [optimizer] betas to be two numbers in [0, 1)"),
    ({"optimizer": {"betas": ["a", 0.9]}}, "expected [optimizer] betas[0] to be a number (like 0.9) but got 'a'"),
    ({"optimizer": {"eps": -1e-8}}, "expected [optimizer] eps >= 0 but got -1e-08"),
    ({"optimizer": {"weight_decay": -0.1}}, "expected [optimizer] weight_decay >= 0 but got -0.1"),
    ({"optimizer": {"name": "clipped_adam", "clip_norm": 0.0}}, "expected [optimizer] clip_norm > 0 but got 0.0"),
    ({"optimizer": {"name": "clipped_adam", "lrd": -1.0}}, "expected [optimizer] lrd > 0 but got -1.0"),
    ({"optimizer": {"lr": float("nan")}}, "expected [optimizer] lr to be a finite number"),
    ({"objective": {"alpha": float("inf")}}, "expected [objective] alpha to be a finite number (like 1.0) but got inf"),
    ({"model": {"channels": [16.5, 32]}}, "expected [model] channels[0] to be an int (like 32) but got 16.5"),
])
def test_invalid_configs_name_key_and_allowed_values(config, expected):
    with pytest.raises(ConfigError) as info:
        resolve_config(config)
    assert expected in str(info.value)


def test_a_new_component_starts_from_its_own_defaults():
    config = resolve_config({"model": {"name": "vlae"}})
    assert "style_dim" not in config["model"]  # the default model's options do not leak
    assert config["model"]["levels"] == 3
    # an override that changes the component drops the previous component's options
    config = resolve_config(DEFAULT_CONFIG, ["model.name=hierarchical_vae"])
    assert config["model"]["latent_dims"] == [16, 8]


def test_overrides_and_command_line_keys():
    config = resolve_config(None, {"training.steps": 7, "objective.beta": 2})
    assert config["training"]["steps"] == 7
    assert config["objective"]["beta"] == 2.0 and isinstance(config["objective"]["beta"], float)
    for key in COMMAND_LINE_KEYS.values():
        section, name = key.split(".")
        assert section in config and (name in config[section] or name == "name")
    with pytest.raises(ConfigError, match="expected an override section.key=value"):
        resolve_config(None, ["steps=3"])


@pytest.mark.parametrize("text, expected", [
    ("training.steps=3", ("training.steps", 3)),
    ("optimizer.lr=1e-4", ("optimizer.lr", 1e-4)),
    ("data.name=mnist", ("data.name", "mnist")),
    ('data.root="/a b"', ("data.root", "/a b")),
    ("model.channels=[8, 16]", ("model.channels", [8, 16])),
    ("objective.betas={z1 = 0.5}", ("objective.betas", {"z1": 0.5})),
    ("objective.analytic_kl=false", ("objective.analytic_kl", False)),
])
def test_parse_override(text, expected):
    assert parse_override(text) == expected


def test_unknown_config_source():
    with pytest.raises(ConfigError, match="did you mean 'hfvae_dsprites'"):
        load_config("hfvae_dsprite")


def test_toml_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[training]\nsteps = \n")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_config(path)
    path.write_text("[training]\nstpes = 3\n")
    with pytest.raises(ConfigError, match=r"bad.toml: unknown key \[training\] stpes"):
        load_config(path)


def test_component_factory():
    assert component_factory("objective", "hit").__name__ == "HITLoss"
    with pytest.raises(ConfigError, match="did you mean 'vlae'"):
        component_factory("model", "vlea")
