# A worker: jailrun calls tick(ctx) once per tick; ctx is the only way out.
import math
import statistics

prices = [101.2, 100.8, 102.4, 103.1, 102.9]
count = 0  # module state lives as long as the jail


def tick(ctx):
    global count
    count += 1
    mean = statistics.mean(prices)
    ctx.log.info(f"tick {count}: mean {mean:.2f}, stdev {statistics.stdev(prices):.3f}")
    print("sqrt of mean:", round(math.sqrt(mean), 4))  # print goes to the log as info
