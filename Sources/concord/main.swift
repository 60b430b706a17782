import ConcordTraining
print("concord")
