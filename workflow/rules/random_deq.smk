# Random-DEQ analysis (E1, E2, E3, E10): infinite-width kernels against finite-width random
# DEQs and weight-untied networks. Jobs call `overdeq random-deq`; scripts draw and tabulate.
