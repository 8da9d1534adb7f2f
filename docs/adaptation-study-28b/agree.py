"""How closely each texture figure follows the window's HF ratio, over every row measured."""
import json, sys
rows = [json.loads(l) for p in sys.argv[1:] for l in open(p)]
rows = [r for r in rows if "delta" in r]
guard = [abs(r["texture_ratio"] - r["adapted"]["hf_ratio"]) for r in rows if r.get("texture_ratio") is not None]
patch = [(r["texture_ratio_patches"], r["adapted"]["hf_ratio"]) for r in rows if r.get("texture_ratio_patches") is not None]
print(f"guard's ratio: {len(guard)} rows, max |diff| {max(guard):.3f}, mean {sum(guard)/len(guard):.3f}")
print(f"16-px patches: {len(patch)} rows, max |diff| {max(abs(a-b) for a,b in patch):.3f}, mean {sum(abs(a-b) for a,b in patch)/len(patch):.3f}")
print("HF > 1.2:", [(r["photo"], r["degradation"], r["setting"], round(r["adapted"]["hf_ratio"], 2), round(r["texture_ratio"], 2), r.get("texture_ratio_patches") and round(r["texture_ratio_patches"], 2)) for r in rows if r["adapted"]["hf_ratio"] > 1.2])
