"""The names TF Serving shows for the built models: signature keys, method names and input tensors."""

INPUT_ALIAS = "input_1"  # the toy models' input alias (tensor serving_default_input_1:0)
SIGNATURE_KEY = "serving_default"
EXAMPLES_INPUT = "input_example_tensor"  # the classify/regress input tensor (as Estimators named it)
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
