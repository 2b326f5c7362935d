# Working with files in a sandbox
code = """
with open('example.txt', 'w') as f:
    f.write('Hello from sandbox!')

with open('example.txt', 'r') as f:
    content = f.read()
    print(f'File contents: {content}')
"""

response = await client.execute_code(code)
print(response.data['output'])
