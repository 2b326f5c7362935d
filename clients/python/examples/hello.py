import asyncio
from ai_computer import SandboxClient

async def main():
    # Create a new sandbox
    client = SandboxClient()
    await client.setup()

    try:
        # Use the sandbox
        response = await client.execute_code("print('Hello from sandbox!')")
        print(response.data['output'])
    finally:
        # Clean up the sandbox
        await client.cleanup()

asyncio.run(main())
