"""The loop and the application: wires a composed config into data, method, memory and model."""
