import asyncio
from jailrun_client import SandboxClient

CODE = """
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

xs = list(range(10))
plt.plot(xs, [x * x for x in xs], marker="o")
plt.title("squares")
plt.savefig("squares.png")
"""

async def main():
    async with SandboxClient() as c:
        r = await c.execute_code(CODE)
        if not r.success:
            raise SystemExit(r.data.get("traceback") or r.error)
        png = await c.download("squares.png")  # from the session's directory
        with open("squares.png", "wb") as f:
            f.write(png)
        print("squares.png: %d bytes" % len(png))

asyncio.run(main())
