#!/usr/bin/env python3
"""A stand-in for grpcurl where it cannot be installed.

grpcurl (github.com/fullstorydev/grpcurl) is not packaged by Debian, PyPI,
npm or crates.io, the only registries CI reaches, so scripts/e2e puts this
on PATH when no real grpcurl is there. It does what the README's grpcurl
commands need, the way grpcurl does it: the method's types come from the
server's reflection service (no .proto file), the request is read from
-d as protobuf JSON, and the answer printed as protobuf JSON with
camelCase names. A README command that grpcurl would reject (wrong method,
wrong field, bad JSON) is rejected here too.

Supported: grpcurl [-plaintext] [-H 'name: value']... [-d JSON]
[-unix] ADDRESS SERVICE/METHOD, and `list` for services.
"""

import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def usage(message):
    print(f"grpcurl stand-in: {message}", file=sys.stderr)
    sys.exit(2)


def parse(argv):
    headers, data, unix, plaintext, rest = [], None, False, False, []
    args = iter(argv)
    for arg in args:
        if arg == "-plaintext":
            plaintext = True
        elif arg == "-unix":
            unix = True
        elif arg in ("-H", "-rpc-header"):
            name, _, value = next(args).partition(":")
            headers.append((name.strip().lower(), value.strip()))
        elif arg == "-d":
            data = next(args)
        elif arg.startswith("-"):
            usage(f"flag {arg} is not supported")
        else:
            rest.append(arg)
    if not plaintext:
        usage("only -plaintext is supported")
    return headers, data, unix, rest


def main():
    headers, data, unix, rest = parse(sys.argv[1:])
    if len(rest) not in (1, 2):
        usage("expected ADDRESS [SERVICE/METHOD | list]")
    address = ("unix:" + rest[0]) if unix else rest[0]
    channel = grpc.insecure_channel(address)
    reflection = ProtoReflectionDescriptorDatabase(channel)
    if len(rest) == 1 or rest[1] == "list":
        for service in reflection.get_services():
            print(service)
        return 0
    service_name, _, method_name = rest[1].replace("/", ".").rpartition(".")
    pool = descriptor_pool.DescriptorPool(reflection)
    try:
        service = pool.FindServiceByName(service_name)
    except KeyError:
        print(f"Error invoking method \"{rest[1]}\": service not found", file=sys.stderr)
        return 1
    method = service.methods_by_name.get(method_name)
    if method is None:
        print(f"Error invoking method \"{rest[1]}\": method not found", file=sys.stderr)
        return 1
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    request = json_format.Parse(data or "{}", request_class())
    call = channel.unary_unary(
        f"/{service.full_name}/{method.name}",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    try:
        response = call(request, metadata=headers)
    except grpc.RpcError as error:
        print("ERROR:", file=sys.stderr)
        print(f"  Code: {error.code().name.title().replace('_', '')}", file=sys.stderr)
        print(f"  Message: {error.details()}", file=sys.stderr)
        return 1
    print(json_format.MessageToJson(response, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
