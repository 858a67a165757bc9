"""The built-in plug-ins, registered lazily so that ``collapsebench ls``, ``validate`` and ``plan``
import no heavy library, each with what it declares (:class:`collapsebench.registry.core.Declarations`):
the same keyword arguments a user's plug-in passes to ``register``."""

from __future__ import annotations

from collapsebench.registry.instances import (
    data_sources,
    evaluations,
    executors,
    generators,
    item_builders,
    launchers,
    losses,
    preprocessors,
    prompt_sources,
    regimes,
    trackers,
    trainers,
    validators,
)

# Built-in entries, lazy so that `collapsebench ls` and `validate` import no heavy library.
# data: the data a plug-in works on; model: the model a trainer makes or a plug-in needs.
_B = "collapsebench"
TEXT, VECTOR = "text", "vector"
data_sources.lazy("local", f"{_B}.sources.files:local_source", data=TEXT, preflight=f"{_B}.sources.files:preflight_local",
                  plan=f"{_B}.sources.files:plan_local")
data_sources.lazy("hub", f"{_B}.sources.files:hub_source", data=TEXT, preflight=f"{_B}.sources.files:preflight_hub")
data_sources.lazy("ground_truth_language", f"{_B}.sources.language:ground_truth_language_source", data=TEXT,
                  plan=f"{_B}.sources.language:plan_language", size_arg="n_documents")
data_sources.lazy("gaussian", f"{_B}.toy.gaussian:gaussian_source", data=VECTOR,
                  preflight=f"{_B}.toy.gaussian:preflight_source", plan=f"{_B}.toy.common:plan_rows", size_arg="n",
                  batched=True)
data_sources.lazy("gaussian_mixture", f"{_B}.toy.mixture:gaussian_mixture_source", data=VECTOR,
                  preflight=f"{_B}.toy.mixture:preflight_source", plan=f"{_B}.toy.common:plan_rows", size_arg="n",
                  batched=True)
data_sources.lazy("digits", f"{_B}.toy.vae:digits_source", data=VECTOR, plan=f"{_B}.toy.vae:plan_digits", size_arg="n")

# needs: what a regime draws from S(k-1) (generation's default target); mix_args: the arguments that only
# say how synthetic data is mixed in, so iteration 1 (no synthetic data yet) leaves them out of its fingerprint
_S = f"{_B}.regimes.sizes"
regimes.lazy("replace", f"{_B}.regimes.mixing:replace", preflight=f"{_B}.regimes.mixing:preflight_replace",
             needs=f"{_S}:replace_need", mix_args=("alpha",), plan=f"{_S}:replace_plan", baseline=f"{_S}:replace_baseline",
             batched=True)
regimes.lazy("accumulate", f"{_B}.regimes.mixing:accumulate", needs=f"{_S}:real_size_need",
             plan=f"{_S}:accumulate_plan", batched=True)
regimes.lazy("accumulate_subsample", f"{_B}.regimes.mixing:accumulate_subsample", needs=f"{_S}:real_size_need",
             plan=f"{_S}:size_plan", batched=True)
regimes.lazy("grow", f"{_B}.regimes.mixing:grow", needs=f"{_S}:grow_need", plan=f"{_S}:grow_plan", batched=True)
regimes.lazy("clean_fraction", f"{_B}.regimes.mixing:clean_fraction", needs=f"{_S}:real_size_need",
             mix_args=("alpha",), plan=f"{_S}:size_plan", batched=True)
regimes.lazy("fresh_real", f"{_B}.regimes.parts:fresh_real", data=TEXT, parts=f"{_B}.regimes.parts:fresh_parts",
             plan=f"{_S}:size_plan")

preprocessors.lazy("template", f"{_B}.preprocessors.text:template", data=TEXT)
preprocessors.lazy("length_filter", f"{_B}.preprocessors.text:length_filter", data=TEXT)
preprocessors.lazy("dedup", f"{_B}.preprocessors.text:dedup", data=TEXT)
preprocessors.lazy("tokenize", f"{_B}.preprocessors.text:tokenize", data=TEXT)
preprocessors.lazy("truncate_likely", f"{_B}.toy.truncation:truncate_likely", data=VECTOR, batched=True)

prompt_sources.lazy("unconditional", f"{_B}.prompts.builtin:unconditional")  # the default: any data
prompt_sources.lazy("real_prefix", f"{_B}.prompts.builtin:real_prefix", data=TEXT)
prompt_sources.lazy("real_blocks", f"{_B}.prompts.builtin:real_blocks", finite=True, data=TEXT)
prompt_sources.lazy("prompt_dataset", f"{_B}.prompts.builtin:prompt_dataset", finite=True, data=TEXT,
                    preflight=f"{_B}.prompts.builtin:preflight_prompt_dataset")
prompt_sources.lazy("parts_from_real", f"{_B}.prompts.builtin:parts_from_real", data=TEXT)
prompt_sources.lazy("parts_from_previous_generation", f"{_B}.prompts.builtin:parts_from_previous_generation",
                    data=TEXT)

validators.lazy("jinja", f"{_B}.validators.builtin:jinja", check=f"{_B}.validators.builtin:check_jinja", data=TEXT)
validators.lazy("classifier", f"{_B}.validators.builtin:classifier", torch=True, data=TEXT,
                preflight=f"{_B}.validators.builtin:preflight_classifier")
validators.lazy("perplexity_tier", f"{_B}.validators.builtin:perplexity_tier", torch=True, data=TEXT, model="lm",
                pool=f"{_B}.validators.builtin:select_tier")

losses.lazy("cross_entropy", f"{_B}.losses.builtin:cross_entropy", torch=True)
losses.lazy("truncated_cross_entropy", f"{_B}.losses.builtin:truncated_cross_entropy", torch=True)
losses.lazy("tce", f"{_B}.losses.builtin:truncated_cross_entropy", torch=True)
losses.lazy("focal", f"{_B}.losses.builtin:focal", torch=True)

trainers.lazy("causal_lm", f"{_B}.trainers.causal_lm:train_causal_lm", torch=True, data=TEXT, model="lm",
              check=f"{_B}.trainers.causal_lm:check_config", token_ids=f"{_B}.trainers.causal_lm:encode_documents")
trainers.lazy("sft", f"{_B}.trainers.sft:train_sft", torch=True, data=TEXT, model="lm",
              check=f"{_B}.trainers.sft:check_config", chat=f"{_B}.trainers.sft:trains_on_chat")
trainers.lazy("gaussian_mle", f"{_B}.toy.gaussian:gaussian_mle", data=VECTOR, model="gaussian", batched=True)
trainers.lazy("gmm", f"{_B}.toy.mixture:gmm", data=VECTOR, model="gmm", batched=True)
trainers.lazy("kde", f"{_B}.toy.mixture:kde", data=VECTOR, model="kde", batched=True)
trainers.lazy("vae", f"{_B}.toy.vae:vae", torch=True, data=VECTOR, model="vae")

generators.lazy("transformers", f"{_B}.generators.hf:generate", torch=True, data=TEXT, model="lm",
                check=f"{_B}.generators.hf:check_config")
generators.lazy("vllm", f"{_B}.generators.vllm_engine:generate", torch=True, gpu=True, data=TEXT, model="lm",
                backends=("vllm",),
                check=f"{_B}.generators.vllm_engine:check_config")
generators.lazy("vllm_ray", f"{_B}.generators.vllm_ray:generate", torch=True, gpu=True, data=TEXT, model="lm",
                check=f"{_B}.generators.vllm_ray:check_config")
generators.lazy("gaussian", f"{_B}.toy.gaussian:gaussian_generator", data=VECTOR, model="gaussian", batched=True)
generators.lazy("gmm", f"{_B}.toy.mixture:gmm_generator", data=VECTOR, model="gmm", batched=True)
generators.lazy("kde", f"{_B}.toy.mixture:kde_generator", data=VECTOR, model="kde", batched=True)
generators.lazy("vae", f"{_B}.toy.vae:vae_generator", torch=True, data=VECTOR, model="vae")

# headline: the metrics that say first how a run is going (status, compare, the console line);
# scores: the passes of its model over the held-out real data and the samples (plan)
BOTH = ("holdout", "samples")
evaluations.lazy("perplexity", f"{_B}.evaluations.perplexity:perplexity", torch=True, data=TEXT, model="lm",
                 headline=("holdout_perplexity",), scores=("holdout",))
evaluations.lazy("reference_perplexity", f"{_B}.evaluations.perplexity:reference_perplexity", torch=True, data=TEXT,
                 model="lm", scores=("samples",), reference="reference")
evaluations.lazy("sample_stats", f"{_B}.evaluations.samples:sample_stats", data=TEXT)
evaluations.lazy("language_kl", f"{_B}.evaluations.language:language_kl", torch=True, data=TEXT, model="lm",
                 headline=("lang_kl_truth_model_per_doc",), scores=BOTH)
evaluations.lazy("language_tails", f"{_B}.evaluations.language:language_tails", torch=True, data=TEXT, model="lm",
                 scores=BOTH)
evaluations.lazy("calibration", f"{_B}.evaluations.calibration:calibration", torch=True, data=TEXT, model="lm",
                 preflight=f"{_B}.evaluations.common:preflight_item_file", scores=BOTH)
evaluations.lazy("knowledge", f"{_B}.evaluations.knowledge:knowledge", torch=True, data=TEXT, model="lm",
                 preflight=f"{_B}.evaluations.common:preflight_item_file", scores=BOTH,
                 plugin_args={"items": "item_builders"})
evaluations.lazy("diversity", f"{_B}.evaluations.diversity:diversity", data=TEXT)
evaluations.lazy("unigram_kl", f"{_B}.evaluations.shift:unigram_kl_evaluation", data=TEXT)
evaluations.lazy("lm_eval", f"{_B}.evaluations.lm_eval:lm_eval", torch=True, data=TEXT, model="lm", scores=BOTH)
evaluations.lazy("judge_quality", f"{_B}.evaluations.judges:judge_quality", data=TEXT)
evaluations.lazy("judge_pairwise", f"{_B}.evaluations.judges:judge_pairwise", data=TEXT)
evaluations.lazy("classifier_score", f"{_B}.evaluations.classifier_audit:classifier_score", torch=True, data=TEXT,
                 preflight=f"{_B}.evaluations.classifier_audit:preflight", scores=BOTH)
evaluations.lazy("qualitative", f"{_B}.evaluations.qualitative:qualitative", torch=True, data=TEXT, model="lm",
                 scores=BOTH)
evaluations.lazy("toy_stats", f"{_B}.toy.evaluate:toy_stats", data=VECTOR, headline=("holdout_loglik_mean", "fitted_var"),
                 batched=True)

item_builders.lazy("kr_test", f"{_B}.evaluations.kr_test:kr_test")
item_builders.lazy("next_mention", f"{_B}.evaluations.knowledge_items:next_mention")
item_builders.lazy("cloze", f"{_B}.evaluations.knowledge_items:cloze")

executors.lazy("inline", f"{_B}.executors.local:InlineExecutor")
executors.lazy("subprocess", f"{_B}.executors.local:SubprocessExecutor")
executors.lazy("slurm", f"{_B}.executors.slurm:SlurmExecutor")
executors.lazy("ray", f"{_B}.executors.ray:RayExecutor")

launchers.lazy("torchrun", f"{_B}.executors.launch:torchrun")
launchers.lazy("accelerate", f"{_B}.executors.launch:accelerate", check=f"{_B}.trainers.distributed:check_accelerate")

trackers.lazy("wandb", f"{_B}.trackers.wandb:WandbTracker")
