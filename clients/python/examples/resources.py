# Configure sandbox resources
client = SandboxClient(
    memory_limit="1G",  # 1GB memory limit
    cpu_limit=2,        # 2 CPU cores
    timeout=300         # 5 minute timeout
)
