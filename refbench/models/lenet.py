"""Document 000: LeNet-5 on 28x28 digit images.

conv 6@5x5 (padding 2) -> pool -> conv 16@5x5 -> pool -> fc 120 -> fc 84 -> fc 10,
with the activation as a variant (relu, sigmoid, tanh): the layout of the
document's second listing, padded so that its 16x5x5 flatten is true at
28x28. ``as_written=True`` is the document's first listing: unpadded, with no
activation between the linear layers.
"""
from __future__ import annotations

from torch import nn

from refbench.models._notes import Notes, mnist_substitute
from refbench.models._registry import register_model
from refbench.models._workload import Recipe, Target, Workload

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class LeNet5(nn.Module):
    def __init__(self, *, activation: str = "relu", as_written: bool = False, in_channels: int = 1,
                 num_classes: int = 10):
        super().__init__()
        act = ACTIVATIONS[activation]
        padding, side = (0, 4) if as_written else (2, 5)     # the map after the second pool is 16 x side x side

        def between() -> list[nn.Module]:                    # the first listing has none between its linear layers
            return [] if as_written else [act()]

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=padding), act(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5), act(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120), *between(),
            nn.Linear(120, 84), *between(),
            nn.Linear(84, num_classes),  # logits: CrossEntropyLoss applies log-softmax itself
        )

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model
class LeNet5Workload(Workload):
    name = "lenet5"
    source = "document 000 sections 2 and 3: LeNet-5 on MNIST"
    dataset = "mnist"
    kernel_sweep_layers = True
    variants = {"activation": ("relu", "sigmoid", "tanh"), "as_written": (False, True)}
    recipes = {
        "document": Recipe(optimizer="adam", lr=1e-2, batch_size=128, epochs=20, normalize="none",
                           source="document 000, first listing: Adam lr = 0.01, batch_size = 128, "
                                  "num_epochs = 20, ToTensor() only"),
        "document-sgd": Recipe(optimizer="sgd", lr=1e-2, momentum=0.9, batch_size=128, epochs=20, normalize="none",
                               source="document 000, second listing: SGD momentum 0.9; its learning_rate is "
                                      "undefined, so lr, batch size, epochs and inputs are the first listing's"),
        "fast": Recipe(optimizer="adam", lr=2e-3, batch_size=128, epochs=10, source="refbench's"),
    }
    targets = {
        "quick": Target("accuracy", 0.85, recipe="fast", dataset="fashion-mnist", max_epochs=2, wall_cap_s=300,
                        eval_every_steps=200,
                        source="refbench's CI check: under the 0.875 that 2 epochs of 'fast' reach on Fashion-MNIST "
                               "(mean of 3 seeds, reports/cpu/converge-quick-seeds.jsonl)"),
        "full": Target("accuracy", 0.89, recipe="fast", dataset="fashion-mnist", max_epochs=20, stop_at_target=True,
                       source="Fashion-MNIST's benchmark table (github.com/zalandoresearch/fashion-mnist) lists "
                              "two-convolution networks at 0.876 to 0.925; refbench's runs of this one: "
                              "reports/cpu/converge-full"),
    }
    notes = Notes(
        document="000", section="第二节 基于PyTorch构建一个深度学习框架",
        says=(
            "The first listing, `class LeNet(torch.nn.Module)`, has two unpadded 5x5 convolutions (6 and 16 "
            "channels), each followed by ReLU and a 2x2 max pool, then `self.fc1 = torch.nn.Linear(7*7*16, 120)`, "
            "`self.fc2 = torch.nn.Linear(120, 84)` and `self.fc3 = torch.nn.Linear(84, 10)` applied one after "
            "the other with no activation between them; forward returns the logits, and no listing has a softmax.",
            "Unpadded, a 28x28 image leaves a 16x4x4 map (256 features) after the second pool, not 7*7*16 = 784, "
            "so fc1 fails; a 7x7 map would need both convolutions padded by 2.",
            "The first listing trains with `torch.optim.Adam(model.parameters(), lr=lr)`, `lr = 0.01`, "
            "`batch_size = 128`, `num_epochs = 20` and `torch.nn.CrossEntropyLoss()` on MNIST loaded with "
            "`transform=torchvision.transforms.ToTensor()` and no normalisation; it sets `activation ='relu'` "
            "and never uses it.",
            "The second listing, in `第三节 使用PyTorch进行训练和测试`, is an nn.Sequential with "
            "`activation_function` after both convolutions and after the first two linear layers, "
            "`torch.nn.MaxPool2d(kernel_size=2)`, `FlattenLayer()`, `torch.nn.Linear(16*5*5, 120)` and "
            "`torch.nn.Linear(84, num_classes)`, trained with "
            "`optim.SGD(net.parameters(), lr=learning_rate, momentum=0.9)`; activation_function, FlattenLayer, "
            "num_classes, learning_rate, trainloader, testloader and device are defined nowhere, nn and optim "
            "are not imported, and the text offers `'sigmoid'` or `'tanh'` as the activation.",
            "16*5*5 is the map of a 32x32 input; at 28x28 the second listing's unpadded layers also give 16x4x4.",
        ),
        changed=(
            "The default is the second listing's layout with conv1 padded by 2, so that a 28x28 image gives "
            "the 16x5x5 map its Linear(16*5*5, 120) expects (61,706 parameters), as LeNet-5 on MNIST usually is.",
            "as_written=True keeps the first listing's layers and changes only fc1's input, from 7*7*16 to the "
            "256 features its layers produce.",
            "The activation variant stands for the second listing's activation_function (relu, sigmoid or "
            "tanh); with as_written=True it replaces the first listing's two ReLUs, and relu is that listing "
            "exactly.",
        ),
        substituted=(mnist_substitute("LeCun et al. (1998) report LeNet-5 wrong on 0.95% of MNIST's test "
                                      "images, where this one is wrong on about 10% of Fashion-MNIST's"),),
        own_choices=(
            "The default activation, relu, is refbench's choice for the second listing's layout: its "
            "activation_function is defined nowhere and its text offers only 'sigmoid' or 'tanh' (relu is what "
            "the first listing uses); activation=sigmoid and "
            "activation=tanh build the text's two.",
            "'document-sgd' borrows the first listing's lr 0.01, batch size, epochs and inputs, since the "
            "second listing's learning_rate and trainloader are undefined.",
            "'fast' (Adam, lr 2e-3, batch 128, inputs normalised by the data set's mean and standard "
            "deviation) is refbench's; the quick and full targets use it.",
        ),
        as_written=("as_written=True: the first listing, convolutions unpadded, no activation between the "
                    "linear layers, logits out, fc1 taking 256 inputs in place of 7*7*16 (44,426 parameters)."),
    )

    def build(self, *, activation: str, as_written: bool) -> nn.Module:
        return LeNet5(activation=activation, as_written=as_written)
