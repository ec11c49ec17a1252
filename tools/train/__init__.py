"""Training for the bundled model (issue 9): vocabulary, masked-LM pretraining, SQuAD fine-tuning, DeFormer
fine-tuning with distillation. Uses the exporter's model definition (pydeformer.bert.BertQA) and writes Hugging
Face-format checkpoint directories, which tools/deformer-export turns into model files like any user's model.
Run as `python3 -m train.<stage>` with tools/ on PYTHONPATH (see tools/train/README.md)."""
