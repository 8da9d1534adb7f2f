import json, sys
for path in sys.argv[1:]:
    for l in open(path):
        r = json.loads(l)
        if "delta" not in r: print(r.get("photo"), r.get("degradation"), r.get("setting"), r.get("error")); continue
        d = r["delta"]
        print(f"{r['photo']:11s} {r['degradation']} {r['setting']:12s} adapt {r['adapt_seconds']:6.1f}s dPSNRnf {d['psnr_nonface']:+.3f} dNIQE {d['niqe']:+.3f} dPIQE {d['piqe']:+.2f} HF {r['adapted']['hf_ratio']:.3f} guard-ratio {r['texture_ratio']:.3f} p16 {r.get('texture_ratio_patches')} px {r.get('guard_pixels')} faceguard {r['guard_adapts']} steps {r['steps_taken']}/{r['best_step']}")
