"""The face stage: detect faces (RetinaFace), align them to the FFHQ template, restore them with a
face prior (and the priors' conventions), cut face regions and (LQ, restored) patch pairs.
It imports only itself and the runtime's shared pieces (types, images, report, sanity)."""
