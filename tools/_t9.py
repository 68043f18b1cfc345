import torch, time, sys, random
import numpy as np
import torch.nn.functional as F
from PIL import Image, ImageDraw
from scenes.train import *
from scenes.model import build, llava_config
from scenes import generator as G
torch.set_flush_denormal(True)
tok = build_llama_tokenizer(tokenizer_corpus(7), BASE_VOCAB)
iid = tok.convert_tokens_to_ids(IMAGE_PLACEHOLDER)
cfg = llava_config(len(tok), iid, tok.pad_token_id)
model, probe = build(cfg, 7)
head = torch.nn.Linear(64, len(G.SHAPES))
def owners(scene):
    mask = Image.new("L", (336, 336), 0); d = ImageDraw.Draw(mask)
    for i, o in enumerate(scene.objects): G._draw_shape(d, o, fill=i + 1)
    px = np.asarray(mask).reshape(24, 14, 24, 14).transpose(0, 2, 1, 3).reshape(576, -1)
    n=len(scene.objects)
    counts = np.stack([(px == l).sum(1) for l in range(n + 1)], 1); counts[:, 0] = 0
    own = counts.argmax(1); own[counts.max(1) < 0.25 * 196] = 0
    return own
B=int(sys.argv[1]); lr=float(sys.argv[2]); LAYER=int(sys.argv[4])
ps=list(model.model.vision_tower.parameters())+list(head.parameters())
opt=torch.optim.AdamW(ps, lr=lr, betas=(0.9,0.98), weight_decay=0.05)
t=time.time(); accs=[]
for step in range(int(sys.argv[3])):
    for g in opt.param_groups: g["lr"]=lr*min(1,(step+1)/30)
    seeds=[80_000_000+step*B+i for i in range(B)]
    ex=[training_example(s) for s in seeds]
    b=collate(ex,tok,iid,tok.pad_token_id)
    v=model.model.vision_tower(b["pixel_values"],output_hidden_states=True)
    h=v.hidden_states[LAYER][:,1:]
    pooled=[];labels=[]
    for i,s in enumerate(seeds):
        sc=G.Scene.sample(random.Random(s)); own=torch.tensor(owners(sc))
        for k,o in enumerate(sc.objects):
            m=own==k+1
            if m.any(): pooled.append(h[i][m].mean(0)); labels.append(G.SHAPES.index(o.shape))
    logits=head(torch.stack(pooled)); y=torch.tensor(labels)
    loss=F.cross_entropy(logits,y)
    opt.zero_grad(); loss.backward(); opt.step()
    accs.append((logits.argmax(-1)==y).float().mean().item())
    if step%25==24: print(step, f"{loss.item():.3f}", f"object shape acc(avg25) {sum(accs[-25:])/25:.3f}", f"{time.time()-t:.0f}s", flush=True)
