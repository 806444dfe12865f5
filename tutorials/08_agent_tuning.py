# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · Agent tuning with SWIFT's loss scale
#
# **Claim:** (the paper's abstract) SWIFT (Zhao et al., 2024, [arXiv:2408.05517](https://arxiv.org/abs/2408.05517))
# fine-tunes LLMs on ToolBench-style tool-use dialogs; for agent training, ms-swift applies the *loss
# scale* of ModelScope-Agent ([arXiv:2309.00986](https://arxiv.org/abs/2309.00986); ms-swift's
# "Agent fine-tuning best practice" page), extra weight on the `Action` / `Action Input` tokens of
# each ReAct turn. The abstract reports that models trained on SWIFT with customised data improve on
# the ToolBench leaderboard "over various baseline models": Act.EM (action exact match) up by
# 5.2–21.8 %, hallucination down by 1.6–14.1 %, average performance up by 8–17 %. The abstract does
# not name the baselines or the model sizes, and does not say whether these are points or relative
# changes; we could not check them against the paper's table here.
#
# **Running time** measured 2026-12-05 with one torch thread on the project's 2-core CPU beside one
# other full-mode notebook on the other core: full mode (2 conditions × 3 seeds × 80 LoRA steps,
# 7 agent evaluations) **3 min 14 s** (`jupyter nbconvert --execute`; the notebook's own clock: 185 s);
# quick mode (`SWIFTLITE_QUICK=1`, the zoo's
# quick builds cached) 37 s in the notebook test. Section 9 prints this run's time. The committed
# figures come from that full run.
#
# **You will learn**
# * to write the loss-scaled SFT loss from scratch and check it against the package's `sft_loss`;
# * how a ReAct tool-use dialog becomes SFT data, and how SWIFT's loss scale re-weights its tokens
#   (and masks the tool outputs the model cannot know);
# * how to score an agent: Act.EM per step, hallucinated tools and malformed arguments, and the
#   final answer after running the real tools;
# * what 80 LoRA steps on a 1M-parameter LLaMA do and do not reproduce of the paper's claim.
#
# Everything runs offline: the model is the zoo's `llama-tiny` (a `transformers.LlamaForCausalLM`
# pretrained on Python's standard library), the dialogs are `swiftlite.data.tool_dialogs`
# (calculator, unit conversion and a small fact table: deterministic tools, so every gold action
# can be replayed and every predicted one executed).

# %%
import html
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import transformers
from IPython.display import HTML, Markdown, display
from tqdm.auto import tqdm

import swiftlite
import swiftlite.zoo as zoo
from swiftlite import LoRAConfig, Swift, viz
from swiftlite.data.tools import run_tool, tool_dialogs
from swiftlite.llm import REACT_LOSS_SCALE, SFTCollator, build_sft_dataset, evaluate_agent, show_loss_scale, sft_loss
from swiftlite.llm.agent import agent_pairs, format_trajectory, score_step
from swiftlite.llm.loss_scale import split_spans
from swiftlite.settings import quick_mode
from swiftlite.train import train

QUICK = quick_mode()  # CI smoke run: 1 seed, 3 steps, 4 evaluation dialogs
SEEDS = [0] if QUICK else [0, 1, 2]
STEPS, BATCH_SIZE, LR = (3, 4, 1e-2) if QUICK else (80, 8, 1e-2)
N_TRAIN, N_EVAL = (32, 4) if QUICK else (1000, 30)
MAX_NEW_TOKENS, MAX_STEPS = (48, 2) if QUICK else (96, 4)
torch.set_num_threads(1)  # on a shared 2-core CPU one thread is several times cheaper than two fighting
started = time.perf_counter()
print(f"swiftlite {swiftlite.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"{'quick' if QUICK else 'full'} mode")

# %% [markdown]
# ## 1. Tool-use dialogs
#
# A dialog is a question, then ReAct steps — `Thought`, `Action` (a tool name), `Action Input`
# (JSON arguments), `Observation` (what the tool returned) — and a final answer. The observations
# are real outputs of `run_tool`, so a dialog can be replayed.

# %%
model, tokenizer = zoo.load("llama-tiny")
train_dialogs = tool_dialogs(N_TRAIN, seed=0)
eval_dialogs = tool_dialogs(N_EVAL, seed=1)  # other seed: unseen questions
example = train_dialogs[0]
print(example["text"])
for action in example["gold_actions"]:  # replay: the tools give the recorded observations
    assert run_tool(action["tool"], action["input"]) == action["observation"]

# %% [markdown]
# ## 2. The loss scale
#
# SFT trains on the assistant's transcript (the question is the prompt, label $-100$). SWIFT's loss
# scale multiplies each response token's loss by a weight $w_t$ from the span it falls in:
#
# $$ \mathcal{L} = \frac{1}{|R|} \sum_{t \in R} w_t \,\bigl(-\log p_\theta(x_t \mid x_{<t})\bigr),
#    \qquad R = \{t : \text{label}_t \neq -100\}. $$
#
# The map is ms-swift's `react` recipe, `key: (weight of the key, weight of the text after it)`;
# a weight of 0 masks the token (label $-100$): the tool's output is not the model's to predict.
# The normaliser stays $|R|$, so a weight of 2 doubles a token's share of the gradient
# ([`swiftlite/llm/loss_scale.py`](../swiftlite/llm/loss_scale.py)).

# %%
for key, (w_key, w_content) in REACT_LOSS_SCALE.items():
    print(f"{key:<15} key {w_key}  content {w_content}")
pairs = agent_pairs(train_dialogs)
datasets_ = {  # one SFT dataset per condition; the tokens are the same, the weights differ
    "plain SFT": build_sft_dataset(pairs, tokenizer, max_length=None),
    "loss scale": build_sft_dataset(pairs, tokenizer, max_length=None, loss_scale=REACT_LOSS_SCALE),
}
shown = show_loss_scale(tokenizer, datasets_["loss scale"][0])

# %% [markdown]
# Predict before reading the printout: which lines get weight 2, and which text is masked although
# plain SFT would score it? Check:

# %%
scaled, plain = datasets_["loss scale"][0], datasets_["plain SFT"][0]
assert scaled["input_ids"] == plain["input_ids"]
masked_only_here = [t for t, a, b in zip(scaled["input_ids"], scaled["labels"], plain["labels"]) if a == -100 != b]
print("scored by plain SFT, masked by the loss scale:", repr(tokenizer.decode(masked_only_here)))
observations = "".join(f" {a['observation']}\n" for a in example["gold_actions"])
assert tokenizer.decode(masked_only_here).replace(" ", "") == observations.replace(" ", "")
heavy = tokenizer.decode([t for t, w in zip(scaled["input_ids"], scaled["loss_scale"]) if w == 2.0])
assert all(a["tool"] in heavy for a in example["gold_actions"])  # the tool names weigh double

# %% [markdown]
# ## 2b. The weighted loss from scratch
#
# Given the per-token weights (the `loss_scale` column above), the loss is a few lines of plain
# PyTorch: the next-token negative log-likelihood at every labelled position, times its weight,
# summed and divided by the number of labelled positions.

# %%
def scratch_weighted_loss(m, batch) -> torch.Tensor:
    logits = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
    log_p = logits[:, :-1].float().log_softmax(-1)  # (B, T-1, V): position t predicts token t+1
    labels = batch["labels"][:, 1:]  # (B, T-1)
    scored = labels != -100  # R, the labelled positions
    nll = -log_p.gather(-1, labels.clamp(min=0)[..., None])[..., 0]  # (B, T-1): −log p(x_t | x_<t)
    w = batch["loss_scale"][:, 1:] if "loss_scale" in batch else torch.ones_like(nll)  # (B, T-1): w_t
    # L = (1/|R|) Σ_{t∈R} w_t · (−log p_θ(x_t | x_<t))
    return (w * nll)[scored].sum() / scored.sum()

# %% [markdown]
# The check against the package's `sft_loss`, on the real `llama-tiny` and a batch of four
# dialogs, with the loss-scale weights and without them:

# %%
collate = SFTCollator(pad_token_id=tokenizer.pad_token_id)
check_losses = {}
with torch.no_grad():
    for condition in ("loss scale", "plain SFT"):
        batch = collate([datasets_[condition][i] for i in range(4)])
        mine, theirs = scratch_weighted_loss(model, batch), sft_loss(model, batch)
        torch.testing.assert_close(mine, theirs)
        check_losses[condition] = mine.item()
print("from scratch == sft_loss:", ", ".join(f"{c} {v:.4f}" for c, v in check_losses.items()))
assert check_losses["loss scale"] != check_losses["plain SFT"]  # the weights do change the loss

# %% [markdown]
# The data flow of the loss, with this batch's shapes: the model and the span map run side by side
# and meet in a per-token product; the tool output never reaches the sum (weight 0, label −100).

# %%
B, T = batch["input_ids"].shape
flow = viz.FlowDiagram("SWIFT's loss scale: L = (1/|R|) Σ_R w_t · (−log p(x_t | x_<t))")
flow.box("ids", f"transcript tokens\n({B}, {T})", at=(0, 1))
flow.box("model", "llama-tiny + LoRA\n(frozen + trainable)", at=(2.8, 1), kind="tuner")
flow.box("nll", f"−log p(x_t | x_<t)\n({B}, {T - 1})", at=(5.8, 1))
flow.box("text", "response text", at=(0, -1))
flow.box("map", "span map: Action 2,\nAction Input 2,\ntool output 0", at=(2.9, -1), kind="condition")
flow.box("w", f"w_t\n({B}, {T - 1})", at=(5.8, -1))
flow.node("mul", "×", at=(7.4, 0))
flow.box("sum", "Σ over R / |R|", at=(9.1, 0))
flow.box("loss", "L", at=(11.0, 0))
for a, b in [("ids", "model"), ("model", "nll"), ("text", "map"), ("map", "w"), ("nll", "mul"), ("w", "mul"),
             ("mul", "sum"), ("sum", "loss")]:
    flow.arrow(a, b)
viz.save_figure(flow.draw(), "08_data_flow")

# %% [markdown]
# ## 3. Where LoRA attaches
#
# Both conditions train the same LoRA, rank 8 on every linear layer of the four decoder blocks
# (as in tutorial 02); only the loss differs.

# %%
lora_config = LoRAConfig(r=8, lora_alpha=32,
                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
diagram = viz.tuner_diagram(model, lora_config)

# %% [markdown]
# ## 4. Before fine-tuning
#
# `evaluate_agent` ([`swiftlite/llm/agent.py`](../swiftlite/llm/agent.py)) scores three things:
#
# * **Act.EM**: for each gold step, with the gold history in the prompt, the model writes until
#   `Observation:`; its first action must have the gold tool *and* the gold arguments;
# * **hallucination rate**: the share of those steps whose call names a tool that does not exist
#   or has malformed arguments (not a JSON object with exactly the tool's parameter names);
# * **final-answer accuracy**: the model runs free — its own actions, executed by the real tools —
#   and its `Final Answer` must equal the gold answer.
#
# Predict: the base model has never seen the format; it should score 0 on all three (and may not
# call a tool at all).

# %%
def scores(result: dict) -> dict:
    return {k: result[k] for k in ("act_em", "hallucination_rate", "final_answer_accuracy")}


base_result = evaluate_agent(model, tokenizer, eval_dialogs, max_steps=MAX_STEPS, max_new_tokens=MAX_NEW_TOKENS)
print(scores(base_result), base_result["counts"])
assert base_result["act_em"] == 0.0

# %% [markdown]
# ## 5. Fine-tune: plain SFT vs loss scale, three seeds
#
# For each seed and condition a fresh `llama-tiny` gets a LoRA adapter named after the condition,
# trains `STEPS` steps (AdamW, cosine schedule, batch `BATCH_SIZE`; the lr 1e-2 is a rule of thumb
# from a single 80-step run of each condition, not a sweep) and is evaluated on the held-out dialogs.
# The seed sets the LoRA initialisation and the data order.

# %%
CONDITIONS = ["plain SFT", "loss scale"]
ADAPTER = {"plain SFT": "plain", "loss scale": "loss_scale"}  # adapter names (also the widget's buttons)
results, adapter_weights = {}, {}
for seed in tqdm(SEEDS, desc="seeds"):
    for condition in CONDITIONS:
        base, _ = zoo.load("llama-tiny", progress=False)
        torch.manual_seed(seed)
        tuned = Swift.prepare_model(base, {ADAPTER[condition]: lora_config})
        history = train(tuned, datasets_[condition], sft_loss, steps=STEPS, batch_size=BATCH_SIZE, lr=LR, seed=seed,
                        collate_fn=collate, progress=False)
        results[condition, seed] = evaluate_agent(tuned, tokenizer, eval_dialogs, max_steps=MAX_STEPS,
                                                  max_new_tokens=MAX_NEW_TOKENS)
        results[condition, seed]["train_loss"] = history.loss
        if seed == SEEDS[0]:
            weights = tuned.state_dict(adapter_name=ADAPTER[condition])  # this adapter's LoRA weights only
            adapter_weights[condition] = {k: v.clone() for k, v in weights.items()}
        print(f"seed {seed} {condition:<10}", {k: round(v, 3) for k, v in scores(results[condition, seed]).items()},
              results[condition, seed]["counts"])

# %% [markdown]
# ## 6. Results: mean ± std over the seeds
#
# Predict: with both losses the format is learned (few hallucinations); if the paper's effect
# shows at this scale, the loss-scale rows have the higher Act.EM.

# %%
METRICS = {"act_em": "Act.EM", "hallucination_rate": "hallucination rate",
           "final_answer_accuracy": "final-answer accuracy"}
summary = {"before fine-tuning": {m: (base_result[m], 0.0) for m in METRICS}}
for condition in CONDITIONS:
    values = {m: [results[condition, s][m] for s in SEEDS] for m in METRICS}
    summary[condition] = {m: (float(np.mean(v)), float(np.std(v))) for m, v in values.items()}
table = "| | " + " | ".join(METRICS.values()) + " |\n|---|" + "---|" * len(METRICS) + "\n"
for name, row in summary.items():
    table += f"| {name} | " + " | ".join(f"{100 * m:.1f} ± {100 * s:.1f} %" for m, s in row.values()) + " |\n"
display(Markdown(table))

delta = {m: [results["loss scale", s][m] - results["plain SFT", s][m] for s in SEEDS] for m in METRICS}
print("loss scale − plain SFT, per seed (percentage points):",
      {METRICS[m]: [round(100 * d, 1) for d in v] for m, v in delta.items()})

# %%
zero_everywhere = [m for m in METRICS if all(summary[n][m][0] == 0 for n in summary)]
shown = [m for m in METRICS if m not in zero_everywhere] or ["act_em"]  # a metric at 0 for every arm has no panel
# (quick mode's 3 steps leave every metric at 0: it draws the Act.EM panel anyway, to exercise the code)
print("metrics at 0 % for every arm (no panel):", [METRICS[m] for m in zero_everywhere] or "none")
fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 3.6), squeeze=False)
colors = {"before fine-tuning": "#8c8c8c", "plain SFT": "#4c72b0", "loss scale": "#dd8452"}
for ax, metric in zip(axes[0], shown):
    names = list(summary)
    means = [100 * summary[n][metric][0] for n in names]
    stds = [100 * summary[n][metric][1] for n in names]
    ax.bar(range(len(names)), means, yerr=stds, capsize=4, color=[colors[n] for n in names])
    for i, s in enumerate(SEEDS):  # the individual seeds as dots
        ax.scatter([1, 2], [100 * results[c, s][metric] for c in CONDITIONS], color="black", s=10, zorder=3,
                   label="one seed" if i == 0 else None)
    ax.set_xticks(range(len(names)), labels=["before", "plain SFT", "loss scale"])
    ax.set_ylabel(f"{METRICS[metric]} (%)")
    ax.set_ylim(0, max(5.0, 1.3 * max(m + s for m, s in zip(means, stds))))
    ax.set_title(METRICS[metric])
    ax.legend(frameon=False, fontsize=8, loc="upper left")
n_seeds = f"{len(SEEDS)} seed{'s' if len(SEEDS) > 1 else ''}"
fig.suptitle(f"llama-tiny + LoRA r=8, {STEPS} steps, {n_seeds}, {N_EVAL} held-out dialogs "
             f"(bars: mean, whiskers: std)")
fig.tight_layout()
viz.save_figure(fig, "08_agent_tuning")

# %% [markdown]
# **Next to the paper, like for like.** The abstract's numbers are gains of models fine-tuned on
# SWIFT over baseline models it does not name; the closest measurement of ours is *after − before*
# (each fine-tuned run minus the base model, per seed). The paper's setting differs: ToolBench's
# thousands of real APIs, LLMs far larger than ours (the abstract gives no sizes), full
# training runs; ours: three deterministic tools, a 1M-parameter model, 80 LoRA steps. The last
# column, loss scale − plain SFT, isolates the loss scale; the abstract gives no number of that
# kind to compare it with.

# %%
PAPER = {"act_em": "+5.2 … +21.8 %", "hallucination_rate": "−1.6 … −14.1 %"}  # arXiv:2408.05517 abstract, over baselines
gain = {c: {m: 100 * np.array([results[c, s][m] - base_result[m] for s in SEEDS]) for m in METRICS} for c in CONDITIONS}
side = ("| | SWIFT abstract: SWIFT-trained vs baselines (ToolBench; unit unstated) | ours: plain SFT − before | "
        "ours: loss scale − before | ours: loss scale − plain SFT |\n|---|---|---|---|---|\n")
for metric in METRICS:
    d = 100 * np.array(delta[metric])
    cells = [f"{gain[c][metric].mean():+.1f} ± {gain[c][metric].std():.1f} pp" for c in CONDITIONS]
    side += (f"| Δ {METRICS[metric]} | {PAPER.get(metric, '—')} | " + " | ".join(cells)
             + f" | {d.mean():+.1f} ± {d.std():.1f} pp |\n")
display(Markdown(side))
hal_before = 100 * base_result["hallucination_rate"]
print(f"hallucination before fine-tuning: {hal_before:.1f} % — the base model's calls: {base_result['counts']}")

# %% [markdown]
# The calls counted as hallucinations (malformed arguments or an unknown tool), as the models wrote them:

# %%
hallucinated = [(c, s, step) for c in CONDITIONS for s in SEEDS for step in results[c, s]["per_step"]
                if step["class"] in ("hallucinated_tool", "malformed_args")]
for c, s, step in hallucinated[:6]:
    written = [line for line in step["predicted"].splitlines() if line.startswith("Action")]
    print(f"{c}, seed {s}, {step['class']}: {written} (gold: {step['gold_tool']} {step['gold_input']})")
print(f"{len(hallucinated)} in all")

# %% [markdown]
# ## 7. Trajectories beside the gold ones
#
# The free runs of the first seed's two adapters on three held-out questions (observations come
# from the real tools).

# %%
def pre(text: str) -> str:
    return f"<pre style='font-size:11px; white-space:pre-wrap'>{html.escape(text)}</pre>"


cells = "<tr><th>gold</th><th>plain SFT</th><th>loss scale</th></tr>"
for i in range(min(3, N_EVAL)):
    gold = f"Question: {eval_dialogs[i]['question']}\n{eval_dialogs[i]['messages'][-1]['content']}"
    runs = [format_trajectory(results[c, SEEDS[0]]["trajectories"][i]) for c in CONDITIONS]
    cells += "<tr>" + "".join(f"<td style='vertical-align:top'>{pre(t)}</td>" for t in [gold] + runs) + "</tr>"
display(HTML(f"<table>{cells}</table>"))

# %% [markdown]
# ## 8. Chat with the agent, adapters on and off
#
# One base model carries both adapters of the first seed. Choose a held-out question or type your
# own, and switch between the adapters and the bare base model: each change reruns the ReAct loop
# (generation stops at `Observation:`, the tool runs, its output goes back in).

# %%
chat_model = Swift.prepare_model(zoo.load("llama-tiny", progress=False)[0],
                                 {ADAPTER[c]: lora_config for c in CONDITIONS})
for condition in CONDITIONS:
    chat_model.load_state_dict(adapter_weights[condition], adapter_name=ADAPTER[condition])
requests = list(eval_dialogs["question"][:5]) + ["How many moons does mars have?"]
chat = viz.agent_chat_widget(chat_model, tokenizer, requests, max_steps=MAX_STEPS, max_new_tokens=MAX_NEW_TOKENS)
chat

# %% [markdown]
# ## 9. What the tiny scale shows, and what it does not
#
# Printed from this run. One scored step of the held-out set is worth `100 / steps` points, so a
# difference of a step or two between conditions is within what one seed changes.

# %%
d_em, d_hal = 100 * np.array(delta["act_em"]), 100 * np.array(delta["hallucination_rate"])
errors = {c: {k: sum(results[c, s]["counts"][k] for s in SEEDS) for k in base_result["counts"]} for c in CONDITIONS}
for c in CONDITIONS:
    print(f"{c}: Act.EM {100 * summary[c]['act_em'][0]:.1f} ± {100 * summary[c]['act_em'][1]:.1f} %, hallucination "
          f"{100 * summary[c]['hallucination_rate'][0]:.1f} ± {100 * summary[c]['hallucination_rate'][1]:.1f} %; "
          f"step classes over the seeds: {errors[c]}")
print(f"before: Act.EM {100 * base_result['act_em']:.1f} %, {base_result['counts']}; one scored step = "
      f"{100 / max(1, base_result['steps']):.1f} pp")
print(f"loss scale − plain SFT, Act.EM per seed: {', '.join(f'{d:+.1f}' for d in d_em)} pp; seeds where it is higher: "
      f"{int((d_em > 0).sum())} of {len(SEEDS)}")
print(f"loss scale − plain SFT, hallucination per seed: {', '.join(f'{d:+.1f}' for d in d_hal)} pp; seeds where it is "
      f"lower: {int((d_hal < 0).sum())} of {len(SEEDS)}")
invented = sum(errors[c]["hallucinated_tool"] for c in CONDITIONS)
print(f"calls to a tool that does not exist, all runs: {invented}; malformed arguments: "
      + ", ".join(f"{c} {errors[c]['malformed_args']}" for c in CONDITIONS))
final = {c: 100 * summary[c]["final_answer_accuracy"][0] for c in CONDITIONS}
print("final-answer accuracy:", ", ".join(f"{c} {v:.1f} %" for c, v in final.items()))
print(f"this run took {time.perf_counter() - started:.0f} s ({'quick' if QUICK else 'full'} mode)")

# %% [markdown]
# How to read it. Our world has three tools and every training call uses one of them, while
# ToolBench has thousands of APIs, so inventing a tool name is rare here (the count above). Most
# errors are *wrong* calls — a real tool with well-formed arguments but a wrong value or the wrong
# tool (section 7 shows some): a 1M-parameter model after 80 steps copies digits from the question
# and from earlier observations poorly. The same weakness keeps the free-running final answer,
# which copies the last observation, near zero: one wrong step spoils the rest of a run. The
# hallucination rate before fine-tuning is low only because the base model hardly calls a tool at
# all (its `no_call` count), which is why "after − before" for hallucination says little here.
#
# What was tried: three seeds per condition at one step budget (80 steps of 8 dialogs, lr 1e-2,
# the lr from one 80-step run per condition). Not tried: longer training, a larger model, other
# loss-scale maps (exercise 2 builds one). What the run does not show: whether the loss scale helps
# at the paper's scale — the abstract's numbers measure fine-tuning as a whole, not the loss scale
# alone.

# %% [markdown]
# ## Exercises
#
# Write your prediction in the cell with `...`, then run the cell under it (collapsed in
# JupyterLab: click the bar to open it): it computes the reference, checks it against the data or
# the package, and then checks your answer (printing the reference if you left `...`).
#
# 1. **Count what the loss scale hides.** For the second training dialog, predict how many
#    characters of tool output (spaces and newlines not counted) the loss scale masks although plain
#    SFT scores them. Count them from `train_dialogs[1]`.

# %%
my_hidden_chars = ...  # your answer: an integer

# %% jupyter={"source_hidden": true}
from swiftlite import check_answer  # noqa: E402

second = train_dialogs[1]
s_row, p_row = datasets_["loss scale"][1], datasets_["plain SFT"][1]
hidden = tokenizer.decode([t for t, a, b in zip(s_row["input_ids"], s_row["labels"], p_row["labels"]) if a == -100 != b])
observed = "".join(a["observation"] for a in second["gold_actions"])
assert hidden.replace(" ", "").replace("\n", "") == observed.replace(" ", "")  # exactly the tools' outputs
check_answer(my_hidden_chars, len(observed.replace(" ", "")))

# %% [markdown]
# 2. **What if only the tool calls were trained?** Build a map from `REACT_LOSS_SCALE` in which
#    the `Thought` and `Final Answer` text weigh 0 and the actions (`Action:`, `Action Input:`, key
#    and content) 3. The check cuts the first dialog's response with your map and with the
#    reference map and compares the weights of the pieces.

# %%
my_actions_only = ...  # your answer: a dict key -> (w_key, w_content), e.g. {**REACT_LOSS_SCALE, ...}

# %% jupyter={"source_hidden": true}
actions_only_reference = {**REACT_LOSS_SCALE, "Thought:": (0.0, 0.0), "Final Answer:": (0.0, 0.0),
                          "Action:": (3.0, 3.0), "Action Input:": (3.0, 3.0)}
response = example["messages"][-1]["content"]
reference_spans = split_spans(response, actions_only_reference)
weights_of = dict((text.strip(), w) for text, w in reference_spans)
first_thought = response.split("\n")[0].removeprefix("Thought:").strip()
assert weights_of[example["gold_actions"][0]["tool"]] == 3.0 and weights_of[first_thought] == 0.0
check_answer(my_actions_only if my_actions_only is Ellipsis else split_spans(response, my_actions_only),
             reference_spans)

# %% [markdown]
# 3. **Score by hand.** For the first gold action of the first held-out dialog, a perfect step is
#    `Thought: ...\nAction: <tool>\nAction Input: <json>\nObservation:`; a second variant calls
#    `web_search` with the same arguments; a third calls the right tool with the argument names
#    misspelled. Predict the class `score_step` gives each (one of "correct", "wrong",
#    "hallucinated_tool", "malformed_args", "no_call").

# %%
my_classes = ...  # your answer: a list of three class names, in the order perfect, web_search, misspelled

# %% jupyter={"source_hidden": true}
import json  # noqa: E402

gold_action = eval_dialogs[0]["gold_actions"][0]
misspelled = json.dumps({f"{k}_x": v for k, v in json.loads(gold_action["input"]).items()})
steps_text = [f"Thought: ok.\nAction: {tool}\nAction Input: {args}\nObservation:"
              for tool, args in [(gold_action["tool"], gold_action["input"]), ("web_search", gold_action["input"]),
                                 (gold_action["tool"], misspelled)]]
classes = [score_step(text, gold_action["tool"], gold_action["input"]) for text in steps_text]
assert run_tool(gold_action["tool"], gold_action["input"]) == gold_action["observation"]  # the gold call replays
check_answer(my_classes, classes)

# %% [markdown]
# ## Summary
#
# * SWIFT's loss scale is a per-token weight from a span map; ms-swift's `react` map doubles the
#   tool name and arguments and masks the tool output. In swiftlite it is one argument,
#   `build_sft_dataset(..., loss_scale=REACT_LOSS_SCALE)`, and `sft_loss` applies it.
# * An agent is scored per step against the gold action (Act.EM, hallucinated tools, malformed
#   arguments) and end to end with the real tools (final answer).
# * At this scale both losses learn the format; what limits the agent is copying numbers, and
#   section 9 states, from this run, how far the loss scale moved Act.EM.
#
# Where this lives: [`swiftlite/llm/loss_scale.py`](../swiftlite/llm/loss_scale.py),
# [`swiftlite/llm/agent.py`](../swiftlite/llm/agent.py) (`evaluate_agent`, `run_agent`),
# [`swiftlite/viz/widgets.py`](../swiftlite/viz/widgets.py) (`agent_chat_widget`),
# [`swiftlite/llm/sft.py`](../swiftlite/llm/sft.py) (`sft_loss`, `show_loss_scale`),
# [`swiftlite/data/tools.py`](../swiftlite/data/tools.py) (dialogs and tools).
#
# **Previous:** [`07_controllable_scedit`](07_controllable_scedit.ipynb) · **Next:** [`09_stylebooth`](09_stylebooth.ipynb)
