"""Chat templates in the LLaVA-1.5 conversation style ("USER: <image>\\n... ASSISTANT:"), and one
in the Mistral instruction style LLaVA-NeXT's Mistral variant uses ("[INST] <image>\\n... [/INST]").

Three spellings of the same format, one per storage location, each using Jinja features that real
llava-hf templates rely on: Python string methods (`.upper()`), the `selectattr(..., 'equalto', ...)`
filter, transformers' `{% generation %}` block, string-or-list message content, and a multi-line file
that only renders right with `trim_blocks` and `lstrip_blocks` (transformers turns both on).
"""

# Stored as chat_template.json, the legacy processor file of llava-hf checkpoints. Assistant text is
# wrapped in {% generation %} as in those checkpoints (transformers uses it for assistant masks).
CHAT_TEMPLATE_JSON_STYLE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<image>\n' }}{% endif %}{% endfor %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ part['text'] + ' ' }}{% endgeneration %}"
    "{% else %}{{ part['text'] + ' ' }}{% endif %}"
    "{% endif %}{% endfor %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

# Stored under "chat_template" in tokenizer_config.json. Accepts plain-string content (used for the
# system message) as well as a list of parts; the system prompt goes first on its own line.
CHAT_TEMPLATE_TOKENIZER_CONFIG_STYLE = (
    "{% for message in messages %}"
    "{% if message['content'] is string %}{% set parts = [{'type': 'text', 'text': message['content']}] %}"
    "{% else %}{% set parts = message['content'] %}{% endif %}"
    "{% if message['role'] == 'system' %}{{ parts[0]['text'] + '\n' }}"
    "{% else %}{{ message['role'] | upper }}: "
    "{% for part in parts %}{% if part['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% for part in parts %}{% if part['type'] == 'text' %}{{ part['text'] }} {% endif %}{% endfor %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

# Stored as chat_template.jinja, the file transformers 5 writes. Laid out over several lines: block
# tags on their own lines vanish only with trim_blocks + lstrip_blocks, and `{{-` drops the indent
# in front of each output expression.
CHAT_TEMPLATE_JINJA_FILE = """\
{#- LLaVA-1.5 conversation: images first in each turn, then its text. -#}
{% for message in messages %}
    {% if message['role'] != 'system' %}
        {{- message['role'].upper() + ': ' }}
    {%- endif %}
    {% for part in message['content'] | selectattr('type', 'equalto', 'image') %}
        {{- '<image>\\n' }}
    {%- endfor %}
    {% for part in message['content'] | selectattr('type', 'equalto', 'text') %}
        {{- part['text'] + ' ' }}
    {%- endfor %}
{% endfor %}
{% if add_generation_prompt %}
    {{- 'ASSISTANT:' }}
{%- endif %}
"""

# The Mistral instruction format: each user turn inside [INST] ... [/INST], images first; each
# assistant turn after a space, closed by the end-of-sequence token.
CHAT_TEMPLATE_MISTRAL_STYLE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' }}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] }}{% endfor %}"
    "{{ ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'][0]['text'] + '</s>' }}"
    "{% endif %}"
    "{% endfor %}"
)
