"""Agent evaluation (swiftlite.llm.agent): hand-written steps, the tool loop, and the three scores."""

from __future__ import annotations

import json

import pytest
import torch

from swiftlite.data.tools import tool_dialogs
from swiftlite.llm.agent import (_gold_prefixes, agent_pairs, answers_match, classify_call, evaluate_agent,
                                 run_agent, score_step, tool_parameters)

GOLD_TOOL, GOLD_INPUT = "unit_convert", '{"value": 3, "from_unit": "km", "to_unit": "m"}'


def step(action: str, action_input: str) -> str:
    return f"Thought: I need to convert.\nAction: {action}\nAction Input: {action_input}\nObservation:"


@pytest.mark.parametrize("generated, expected", [
    (step("unit_convert", '{"value": 3, "from_unit": "km", "to_unit": "m"}'), "correct"),
    (step("unit_convert", '{"to_unit": "m", "from_unit": "km", "value": 3.0}'), "correct"),  # key order, 3.0 == 3
    (step("unit_convert", '{"value": 4, "from_unit": "km", "to_unit": "m"}'), "wrong"),  # wrong value
    (step("calculator", '{"expression": "3 * 1000"}'), "wrong"),  # a real tool, the wrong one
    (step("weather", '{"city": "Paris"}'), "hallucinated_tool"),  # no such tool
    (step("unit_convert", '{"value": 3, "from": "km", "to_unit": "m"}'), "malformed_args"),  # wrong key
    (step("unit_convert", '{"value": 3, "from_unit": "km"}'), "malformed_args"),  # a key missing
    (step("unit_convert", '{"value": 3, "from_unit": "km", "to_unit": "m"'), "malformed_args"),  # not JSON
    (step("unit_convert", '[3, "km", "m"]'), "malformed_args"),  # JSON, not an object
    ("Thought: I now know the final answer.\nFinal Answer: 3000", "no_call"),
    ("Action: unit_convert\n", "no_call"),  # an action without its input line
])
def test_hand_written_steps(generated, expected):
    assert score_step(generated, GOLD_TOOL, GOLD_INPUT) == expected


def test_classes_and_answers():
    assert tool_parameters() == {"calculator": ["expression"], "unit_convert": ["value", "from_unit", "to_unit"],
                                 "lookup": ["entity", "field"]}
    assert classify_call(None, GOLD_TOOL, GOLD_INPUT) == "no_call"
    assert classify_call(("lookup", {"entity": "mars", "field": "moons"}), "lookup",
                         {"entity": "mars", "field": "moons"}) == "correct"
    assert answers_match("3000.0", "3000") and answers_match(" 5 ", "5") and not answers_match("5.1", "5")
    assert answers_match("mars", "mars") and not answers_match(None, "5") and not answers_match("five", "5")


def test_gold_prefixes_hold_the_earlier_steps():
    row = tool_dialogs(30, seed=4).filter(lambda r: len(r["gold_actions"]) == 3)[0]
    transcript = row["messages"][-1]["content"]
    prefixes = _gold_prefixes(transcript)
    assert len(prefixes) == 4 and prefixes[0] == ""
    for k in (1, 2, 3):
        assert transcript.startswith(prefixes[k]) and prefixes[k].count("Observation:") == k
        assert prefixes[k].endswith(row["gold_actions"][k - 1]["observation"] + "\n")


def overfit_model(dialogs, tokenizer, steps: int = 80):
    """A small real LlamaForCausalLM trained until it has memorised ``dialogs``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from swiftlite.llm import SFTCollator, build_sft_dataset, sft_loss
    from swiftlite.train import train

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=512))
    ds = build_sft_dataset(agent_pairs(dialogs), tokenizer, max_length=None)
    train(model, ds, sft_loss, steps=steps, batch_size=len(ds), lr=1e-2, progress=False,
          collate_fn=SFTCollator(pad_token_id=tokenizer.pad_token_id), lr_schedule="constant")
    return model


def test_tool_loop_and_scores_on_a_memorised_dialog():
    from transformers import AutoTokenizer

    import swiftlite.zoo as zoo

    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(zoo.path("llama-tiny"))
    dialogs = tool_dialogs(40, seed=0).filter(lambda r: len(r["gold_actions"]) == 2).select([0])
    model = overfit_model(dialogs, tokenizer)
    result = evaluate_agent(model, tokenizer, dialogs, max_new_tokens=200)  # room for a byte-level quick tokenizer
    assert result["steps"] == 2 and sum(result["counts"].values()) == 2
    assert result["act_em"] == 1.0 and result["hallucination_rate"] == 0.0
    assert result["final_answer_accuracy"] == 1.0
    (trajectory,) = result["trajectories"]
    gold = dialogs[0]["gold_actions"]
    # the loop stopped at each observation marker and the real tool answered
    assert [c["tool"] for c in trajectory["calls"]] == [g["tool"] for g in gold]
    assert [c["observation"] for c in trajectory["calls"]] == [g["observation"] for g in gold]
    assert [c["input"] for c in trajectory["calls"]] == [json.loads(g["input"]) for g in gold]
    assert trajectory["final_answer"] == dialogs[0]["answer"]
    assert trajectory["response"].strip() == dialogs[0]["messages"][-1]["content"]
    # an unrelated question: the scores stay in range and the classes partition the steps
    other = tool_dialogs(3, seed=9)
    result = evaluate_agent(model, tokenizer, other, max_steps=2, max_new_tokens=48)
    assert sum(result["counts"].values()) == result["steps"] == sum(len(g) for g in other["gold_actions"])
    assert 0.0 <= result["act_em"] <= 1.0 and 0.0 <= result["hallucination_rate"] <= 1.0
    assert all(len(t["calls"]) <= 2 for t in result["trajectories"])
    assert run_agent(model, tokenizer, []) == []
    # the chat widget: the trajectory with the tool results; switching adapters re-runs it
    from swiftlite import LoRAConfig, Swift
    from swiftlite.viz import BASE_MODEL_OPTION as BASE_MODEL
    from swiftlite.viz import agent_chat_widget as chat_widget

    tuned = Swift.prepare_model(model, {"a": LoRAConfig(r=2, target_modules=["q_proj"]),
                                        "b": LoRAConfig(r=2, target_modules=["q_proj"])})
    with torch.no_grad():  # adapter b breaks the memorised model, adapter a (B = 0) leaves it as it was
        for name, p in tuned.named_parameters():
            if ".b." in name:
                p.normal_(0, 1.0)
    box = chat_widget(tuned, tokenizer, [dialogs[0]["question"]], max_new_tokens=200)
    assert box.adapter.options == ("a", "b", BASE_MODEL) and box.renders == 1
    assert box.last.startswith("[a]") and f"final answer: {dialogs[0]['answer']}" in box.last
    assert f"-> {gold[0]['observation']}" in box.last  # the executed tool call and its result
    first = box.last
    box.adapter.value = "b"
    assert box.renders == 2 and box.last.startswith("[b]") and box.last != first
    assert tuned.active_adapters == ["b"]
    box.adapter.value = BASE_MODEL
    assert box.last.split("\n", 1)[1] == first.split("\n", 1)[1]  # adapter a is the base model (B = 0)
    box.request.value = "How many moons does mars have?"
    assert box.renders == 4 and "Question: How many moons does mars have?" in box.last
    with pytest.raises(ValueError, match="unknown adapters"):
        chat_widget(tuned, tokenizer, ["q"], adapters=["c"])

