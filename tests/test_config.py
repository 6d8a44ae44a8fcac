import pytest

from cord.config import Config, ConfigError, load_config, to_dict
from helpers import ROOT


def test_recipe_loads_with_paper_defaults_and_overrides():
    config = load_config(ROOT / "recipes" / "tiny-hetero.yaml", ["search.beam_size=2", "teachers.0.temperature=0.5"])
    assert isinstance(config, Config)
    assert config.search.beam_size == 2
    assert config.teachers[0].temperature == 0.5
    assert config.teachers[1].temperature == 0.6  # paper default kept
    assert [t.name for t in config.teachers] == ["addsub", "mul", "div"]
    assert config.data.tiny.n == 50


def test_defaults_are_the_papers():
    from cord.config import SearchConfig

    search = SearchConfig()
    assert search.beam_size == 4
    assert search.reasoning_budget == 16384 and search.answer_budget == 4096
    assert search.segmentation == "prompt" and search.prefill == "### Step"  # filled when built


def test_a_config_built_in_python_is_checked_and_filled_as_a_recipe_is():
    from cord.config import ModelConfig

    config = Config(teachers=[ModelConfig(model="tiny:tiny-addsub"), ModelConfig(model="/models/qwq")], meta_prover={"model": "m"})
    assert [t.name for t in config.teachers] == ["tiny-addsub", "qwq"]  # named from their models, as load_config names them
    assert to_dict(config) == to_dict(
        load_config(None, ["teachers=[{model: tiny:tiny-addsub}, {model: /models/qwq}]", "meta_prover.model=m"])
    )
    with pytest.raises(ConfigError, match=r"teachers\.1\.name: duplicate teacher name 'qwq'"):
        Config(teachers=[ModelConfig(model="/a/qwq"), ModelConfig(model="/b/qwq", temperature=0.7)], meta_prover={"model": "m"})
    with pytest.raises(ConfigError, match=r"^teachers: at least one teacher"):
        Config(teachers=[], meta_prover={"model": "m"})
    with pytest.raises(ConfigError, match=r"^beam_size: must be >= 1, got 0$"):
        config.search.beam_size = 0  # an assignment is checked too (the field named within its section)
    with pytest.raises(ConfigError, match=r"^temperature: expected a number, got 'hot'$"):
        ModelConfig(model="m", temperature="hot")


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
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_config(bad)


@pytest.mark.parametrize("recipe", sorted(p.name for p in (ROOT / "recipes").glob("*.yaml")))
def test_every_recipe_loads_and_passes_its_strategy_and_engine_checks(recipe):
    from cord.run import prepare

    config = load_config(ROOT / "recipes" / recipe)
    assert config.teachers and config.meta_prover.model
    assert prepare(config).method.split("+")[0] in ("cord", "greedy", "curation", "integration", "mcts")


def test_paper_recipes_follow_the_paper():
    hetero = load_config(ROOT / "recipes" / "paper-hetero-server.yaml")
    assert [t.temperature for t in hetero.teachers] == [0.6, 0.6, 0.6]
    assert hetero.meta_prover.model == "Qwen/QwQ-32B" and hetero.search.beam_size == 4
    assert (hetero.search.reasoning_budget, hetero.search.answer_budget) == (16384, 4096)
    homo = load_config(ROOT / "recipes" / "paper-homo-vllm.yaml")
    assert [t.temperature for t in homo.teachers] == [0.5, 0.6, 0.7] and {t.model for t in homo.teachers} == {"Qwen/QwQ-32B"}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["teachers.0.engine=openai"], r"teachers\.0\.base_url: engine 'openai' needs"),
        (["meta_prover.api_key_env=KEY"], r"meta_prover\.api_key_env: only server engines"),
        (["search.method=curation", "search.selection=random"], r"search\.selection: 'random' is not used by method 'curation'"),
        (["search.method=mcts", "search.selection=step_judge"], r"search\.selection: 'step_judge' is not used by method 'mcts'"),
        (["search.method=integration"], r"integrator: method 'integration' needs an integrator"),
        (["meta_prover.engine=openai-chat", "meta_prover.base_url=http://127.0.0.1:9"], r"meta_prover\.engine: 'openai-chat' cannot score"),
        (
            ["teachers.0.engine=openai-chat", "teachers.0.base_url=http://127.0.0.1:9", "teachers.0.engine_kwargs={mode: x}"],
            r"teachers\.0\.engine_kwargs",
        ),
        (["teachers.0.engine=vllm", "teachers.0.extra_body={top_k: 20}"], r"^teachers\.0\.extra_body: engine 'vllm' cannot apply it"),
    ],
)
def test_strategies_and_engines_refuse_what_they_do_not_use(overrides, message):
    from cord.run import prepare

    config = load_config(ROOT / "recipes" / "tiny-hetero.yaml", overrides)
    with pytest.raises(ConfigError, match=message):
        prepare(config)


def test_a_plug_in_engine_refuses_sampling_settings_it_does_not_say_it_applies():
    from cord.config import ModelConfig
    from helpers import ScriptedEngine

    ScriptedEngine.check(ModelConfig(model="m"), "teachers.0")
    with pytest.raises(ConfigError, match=r"^teachers\.0\.min_p: engine \S+ cannot apply it; leave it unset$"):
        ScriptedEngine.check(ModelConfig(model="m", min_p=0.05), "teachers.0")


def test_sections_sharing_a_loaded_model_may_differ_in_sampling():
    from cord.run import prepare

    settings = ["top_k=20", "min_p=0.05", "presence_penalty=1.0", "frequency_penalty=0.5", "repetition_penalty=1.1"]
    overrides = ["teachers.1.model=tiny:tiny-addsub", *(f"teachers.1.{setting}" for setting in settings)]  # teacher 0's model
    prepare(load_config(ROOT / "recipes" / "tiny-hetero.yaml", overrides))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["search.teacher_schedule.table={0: [nobody]}"], r"^search\.teacher_schedule\.table\.0: 'nobody' is not a teacher"),
        (["search.teacher_schedule.table={x: [addsub]}"], r"^search\.teacher_schedule\.table: a phase is a whole number"),
        (["search.teacher_schedule.table_from=/nowhere"], r"^search\.teacher_schedule\.table_from: /nowhere is not a cord run"),
        (["teachers.0.base_url=7"], r"^teachers\.0\.base_url: expected a URL or a list of URLs"),
        (["teachers.0.transformers.kv_cache_bytes=1GB"], r"^teachers\.0\.transformers\.kv_cache_bytes: expected an integer"),
        (["teachers.0.openai_chat.continuation=stream"], r"^teachers\.0\.openai_chat\.continuation: 'stream' is not one of vllm, prefix"),
        (
            ["search.beem_size=2", "search.bem=3"],
            r"^unknown config key\(s\): search\.beem_size \(did you mean search\.beam_size\?\), search\.bem$",
        ),
        (["meta_prover=null"], r"^meta_prover: must not be empty"),
        (["search=[]"], r"^search: expected a mapping, got list"),
    ],
)
def test_every_section_answers_in_one_line_naming_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(ROOT / "recipes" / "tiny-hetero.yaml", overrides)


def test_registries_give_the_choices_and_every_entry_imports():
    from cord.config import SearchConfig
    from cord.engines.base import Engine
    from cord.registry import ENGINES, SELECTIONS, STRATEGIES
    from cord.scoring.selection import SelectionRule
    from cord.search import Strategy

    assert STRATEGIES.names() == ("cord", "greedy", "curation", "integration", "mcts", "mcts-cord")
    assert set(SELECTIONS.names()) == {"perplexity", "random", "max_length", "binary_judgment", "step_judge", "prm"}
    for name in STRATEGIES.names():
        assert issubclass(STRATEGIES.load(name), Strategy)
    for name in SELECTIONS.names():
        assert issubclass(SELECTIONS.load(name), SelectionRule)
    for name in ("transformers", "openai", "sglang", "openai-chat"):  # vllm imports lazily, at construction
        assert issubclass(ENGINES.load(name), Engine)
    assert SearchConfig().method in STRATEGIES and SearchConfig().selection in SELECTIONS


def test_rollouts_default_to_the_beam_size_for_whole_trajectory_methods():
    from cord.run import prepare

    for method, expected in (("curation", 4), ("mcts", 4), ("mcts-cord", 4), ("cord", None)):
        config = load_config(ROOT / "recipes" / "tiny-hetero.yaml", [f"search.method={method}"])
        prepare(config)
        assert config.search.rollouts == expected


def test_line_break_and_prefix_runs_send_no_step_marker_instruction_unless_one_is_set():
    """The segmentation ablations compare segmenters: only prompt segmentation asks for "### Step"
    (and opens the first step with it), also when the segmentation is changed after the config is built."""
    from cord.prompts import REASONING_INSTRUCTION, STEP_INSTRUCTION

    recipe = ROOT / "recipes" / "tiny-hetero.yaml"
    for mode in ("linebreak", "prefix"):
        search = load_config(recipe, [f"search.segmentation={mode}"]).search
        assert (search.step_instruction, search.prefill) == (REASONING_INSTRUCTION, "")
        assert "### Step" not in search.step_instruction
    search = load_config(recipe, []).search
    assert (search.step_instruction, search.prefill) == (STEP_INSTRUCTION, "### Step")
    search.segmentation = "linebreak"  # as the benchmarks change it
    assert (search.step_instruction, search.prefill) == (REASONING_INSTRUCTION, "")
    mine = load_config(recipe, ["search.segmentation=prefix", "search.step_instruction=Think aloud."]).search
    assert mine.step_instruction == "Think aloud."
    mine.segmentation = "prompt"
    assert (mine.step_instruction, mine.prefill) == ("Think aloud.", "### Step")


def test_every_key_carries_its_help_text_and_docs_config_md_is_made_from_it():
    from cord.config.describe import as_markdown, describe

    keys = describe()
    assert all(k.description for k in keys), [k.key for k in keys if not k.description]
    assert {"search.beam_size", "data.tiny.n", "<model>.temperature", "grading.judge"} <= {k.key for k in keys}
    beam = next(k for k in keys if k.key == "search.beam_size")
    assert (beam.type, beam.default) == ("integer >= 1", "4")
    method = next(k for k in keys if k.key == "search.method")
    assert method.type.split(" | ") == ["cord", "greedy", "curation", "integration", "mcts", "mcts-cord"]  # read from the registry
    assert (ROOT / "docs" / "config.md").read_text() == as_markdown(keys), "run: python -m cord.config.describe --markdown > docs/config.md"


def test_fixed_choices_are_literals_with_the_same_one_line_error():
    with pytest.raises(ConfigError, match=r"^search\.segmentation: 'lines' is not one of prompt, linebreak, prefix$"):
        load_config(ROOT / "recipes" / "tiny-hetero.yaml", ["search.segmentation=lines"])
    with pytest.raises(ConfigError, match=r"^unknown config key\(s\): data\.tiny\.size$"):  # the plug-in's own section
        load_config(ROOT / "recipes" / "tiny-hetero.yaml", ["data.tiny.size=3"])
    with pytest.raises(ConfigError, match=r"^data\.tiny\.n: must be >= 1, got 0$"):
        load_config(ROOT / "recipes" / "tiny-hetero.yaml", ["data.tiny.n=0"])
