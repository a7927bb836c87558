"""The pieces of the per-worker training loop; `finetune_trainer.train_loop` puts them
together into `train_loop_per_worker`, the function Ray Train runs on every worker.

- `context`: what a worker sets up once (`WorkerContext`: config, rank, device, data,
  plan) and the objects that train and may be rebuilt mid-run (`TrainingParts`);
- `state`: the run's position and running totals (`LoopState`, `Window`, `Plan`);
- `checkpointer`: saving a checkpoint through Ray Train and restoring from one;
- `epoch`: one epoch of forward, backward and optimizer steps;
- `report`: evaluating and reporting (with or without a checkpoint) when it is due;
- `reducer`: the sums, minimums and gathers across ranks;
- `hooks`: the loop's test seam (`LoopHooks`).
"""
