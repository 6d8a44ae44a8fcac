import pytest

from cord.config import Config, ConfigError, load_config, to_dict
from conftest import ROOT


def test_recipe_loads_with_paper_defaults_and_overrides():
    config = load_config(ROOT / "recipes" / "tiny-hetero.yaml", ["search.beam_size=2", "teachers.0.temperature=0.5"])
    assert isinstance(config, Config)
    assert config.search.beam_size == 2
    assert config.teachers[0].temperature == 0.5
    assert config.teachers[1].temperature == 0.6  # paper default kept
    assert [t.name for t in config.teachers] == ["addsub", "mul", "div"]
    assert config.data.tiny.n == 50


def test_defaults_are_the_papers():
    config = Config()
    assert config.search.beam_size == 4
    assert config.search.reasoning_budget == 16384 and config.search.answer_budget == 4096
    assert config.search.segmentation == "prompt"


def test_config_round_trips_whole():
    from cord.config import from_dict

    config = load_config(ROOT / "recipes" / "tiny-homo.yaml")

    assert to_dict(from_dict(Config, to_dict(config))) == to_dict(config)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["search.beem_size=2"], "search.beem_size"),
        (["teachers.0.temprature=1"], "teachers.0.temprature"),
        (["search.beam_size=0"], "search.beam_size"),
        (["teachers.1.temperature=-0.1"], "teachers.1.temperature"),
        (["teachers.0.engine=tgi"], "teachers.0.engine"),
        (["search.beam_size=two"], "search.beam_size"),
        (["teachers=[]"], "teachers"),
        (["search.method=mcts2"], "search.method"),
    ],
)
def test_bad_values_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(ROOT / "recipes" / "tiny-hetero.yaml", overrides)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("teachers: [\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)


@pytest.mark.parametrize("recipe", sorted(p.name for p in (ROOT / "recipes").glob("*.yaml")))
def test_every_recipe_loads(recipe):
    config = load_config(ROOT / "recipes" / recipe)
    assert config.teachers and config.meta_prover.model


def test_paper_recipes_follow_the_paper():
    hetero = load_config(ROOT / "recipes" / "paper-hetero-server.yaml")
    assert [t.temperature for t in hetero.teachers] == [0.6, 0.6, 0.6]
    assert hetero.meta_prover.model == "Qwen/QwQ-32B" and hetero.search.beam_size == 4
    assert (hetero.search.reasoning_budget, hetero.search.answer_budget) == (16384, 4096)
    homo = load_config(ROOT / "recipes" / "paper-homo-vllm.yaml")
    assert [t.temperature for t in homo.teachers] == [0.5, 0.6, 0.7] and {t.model for t in homo.teachers} == {"Qwen/QwQ-32B"}


def test_server_engines_need_a_url():
    with pytest.raises(ConfigError, match="teachers.0.base_url"):
        load_config(ROOT / "recipes" / "tiny-hetero.yaml", ["teachers.0.engine=openai"])
