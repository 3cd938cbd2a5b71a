"""F2LLM-v2 instructions for MTEB tasks, and the prompt each side of a task receives.

Convention (F2LLM-v2 / Qwen3-Embedding, as in mteb's own `codefuse-ai/F2LLM-v2-*` entries):

* the instruction is formatted as ``Instruct: {instruction}\\nQuery: `` and prepended to the text;
* ``prompt_type == "document"`` (retrieval corpora) gets no prompt;
* ``prompt_type == "query"`` gets the task's instruction;
* ``prompt_type is None`` - what mteb passes for symmetric tasks (STS, bitext mining,
  clustering, classification, pair classification) - also gets the instruction, so both sides
  of a symmetric task are embedded the same way.

The instruction is looked up by task name, then by task type, in the user's mapping first and
then in the defaults below (the recipe's examples, docs/recipe.md); anything else falls back to the retrieval
instruction. An empty instruction means "no prompt".
"""

from __future__ import annotations

from collections.abc import Mapping

from f2jax.data.tasks import instruct

RETRIEVAL_INSTRUCTION = "Given a question, retrieve passages that can help answer the question."
TOPIC_INSTRUCTION = "Classify the topic of the given text."

DEFAULT_INSTRUCTIONS: dict[str, str] = {
    "Retrieval": RETRIEVAL_INSTRUCTION,
    "Reranking": RETRIEVAL_INSTRUCTION,
    "STS": "Retrieve semantically similar text.",
    "BitextMining": "Retrieve translations of the following text.",
    "Classification": TOPIC_INSTRUCTION,
    "MultilabelClassification": TOPIC_INSTRUCTION,
    "Clustering": TOPIC_INSTRUCTION,
    "PairClassification": "Retrieve semantically entailed text.",
}


def format_prompt(instruction: str) -> str:
    """The literal prefix for an instruction ('' stays '': no prompt)."""
    return instruct(instruction, "")


def resolve_instruction(task_name: str, task_type: str,
                        overrides: Mapping[str, str] | None = None) -> str:
    """Instruction for a task: user mapping (name, then type), then defaults, then retrieval."""
    for table in (overrides or {}, DEFAULT_INSTRUCTIONS):
        for key in (task_name, task_type):
            if key in table:
                return table[key]
    return RETRIEVAL_INSTRUCTION


def resolve_prompt(task_name: str, task_type: str, prompt_type: str | None,
                   overrides: Mapping[str, str] | None = None) -> str:
    """The prefix the texts of one side receive ('' for documents)."""
    if prompt_type == "document":
        return ""
    return format_prompt(resolve_instruction(task_name, task_type, overrides))


def sentence_transformers_prompts(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The same convention as a `model_prompts` table for mteb's SentenceTransformer wrapper.

    mteb validates those keys against its task registry, so only task types (plus `query` /
    `document`) can be expressed; per-task-name overrides of local tasks cannot.
    """
    instructions = {**DEFAULT_INSTRUCTIONS, **{k: v for k, v in (overrides or {}).items()}}
    table = {key: format_prompt(value) for key, value in instructions.items()}
    for task_type in ("Retrieval", "Reranking"):
        table[f"{task_type}-document"] = ""
        table[f"{task_type}-query"] = table.pop(task_type)
    table["query"] = format_prompt(instructions.get("query", RETRIEVAL_INSTRUCTION))
    table["document"] = ""
    return table
