"""The function service's client side: ``FuncXClient`` (sync and async), ``Batch``, ``FuncXExecutor``.

``client.py`` (the calls), ``executor.py`` (the ``concurrent.futures`` executor),
``batch.py`` (batches), ``results_ws.py`` (results over the WebSocket),
``http.py`` (the aiohttp session, credentials, errors), ``decode.py`` (TASK
JSON to funcX's task dicts; pure), ``loop_thread.py`` (the private I/O loop).
"""
